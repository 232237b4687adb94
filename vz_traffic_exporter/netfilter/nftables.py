"""Reading our nftables table: ``inet vz_traffic``, over netlink or from ``nft -j list table``.

What :mod:`..rules.nftables` writes, read back: the table's handle (the
counters' epoch: a table re-created by anyone starts every counter from
zero), its chains and maps by name (the fingerprint chain ``fp_<hash>``), and
the counting sets (``out4_1``: IPv4 addresses sending to class 1) with their
elements' counters, as :class:`~..model.IpReading`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..model import IpReading, canonical_ip, counter_value
from ..runner import CommandError, Runner
from . import nlnft
from .netlink import Fallback, sessions

FAMILY, TABLE = "inet", "vz_traffic"


WHERE = f"{FAMILY} {TABLE}"


GROUP = "table"  # every counter shares the table's epoch


def set_name(direction: str, version: int, klass: int) -> str:
    return f"{direction}{version}_{klass}"


_SET = re.compile(r"^(out|in)([46])_(\d+)$")


def parse_set_name(name: str) -> Optional[tuple[str, int, int]]:
    """(direction, IP version, class) of one of our counting sets, or None."""
    m = _SET.match(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


@dataclass
class Current:
    """What ``nft -j list table inet vz_traffic`` shows (exists False: no table)."""

    exists: bool = False
    handle: int = 0
    fingerprint: str = ""
    sets: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # name -> element -> counters
    maps: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)


def parse_table(text: str, where: str = "nft") -> Current:
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{where}: not nftables JSON: {err}") from None
    if not isinstance(items, list):
        raise ValueError(f"{where}: nftables is not a list")
    current = Current(exists=True)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        try:
            _parse_item(current, item, where)
        except (KeyError, TypeError, AttributeError) as err:
            kind = next(iter(item), "?")
            raise ValueError(
                f"{where}: nftables[{i}].{kind}: unexpected shape ({type(err).__name__}: {err})"
            ) from None
    return current


def _parse_item(current: Current, item: dict[str, Any], where: str) -> None:
    if "table" in item:
        current.handle = counter_value(item["table"].get("handle", 0), f"{where}: table handle")
    elif "chain" in item:
        name = str(item["chain"]["name"])
        current.chains.append(name)
        if name.startswith("fp_"):
            current.fingerprint = name
    elif "map" in item:
        current.maps.append(str(item["map"]["name"]))
    elif "set" in item:
        current.sets[str(item["set"]["name"])] = _elements(item["set"], where)


def _elements(nft_set: dict[str, Any], where: str) -> dict[str, tuple[int, int]]:
    out = {}
    for entry in nft_set.get("elem", []):
        elem = entry.get("elem", entry) if isinstance(entry, dict) else {"val": entry}
        value = elem.get("val")
        counter = elem.get("counter") or {}
        what = f"{where}: set {nft_set.get('name')}: element {value!r}"
        if not isinstance(value, str) or not isinstance(counter, dict):
            raise ValueError(f"{what} is not an address with a counter")
        ip = canonical_ip(value)
        if ip in out:
            raise ValueError(f"{what} appears twice")
        out[ip] = (
            counter_value(counter.get("packets", 0), f"{what}: packets"),
            counter_value(counter.get("bytes", 0), f"{what}: bytes"),
        )
    return out


ReadingKey = tuple[str, str, int, int, int]  # set, element, packets, bytes, table handle


def readings(current: Current, made: Optional[dict[ReadingKey, IpReading]] = None) -> list[IpReading]:
    """The readings of the counting sets' elements.

    made: the readings of the last read by what they show, updated in place:
    an element that shows the same gives the same reading object.
    """
    old = made if made is not None else {}
    kept: dict[ReadingKey, IpReading] = {}
    out = []
    for name, elements in current.sets.items():
        parsed = parse_set_name(name)
        if parsed is None:
            continue
        direction, _, klass = parsed
        for ip, (packets, nbytes) in elements.items():
            key = (name, ip, packets, nbytes, current.handle)
            reading = old.get(key)
            if reading is None:
                counter = ("nftables", direction, klass, ip)
                reading = IpReading(counter, ip, klass, direction, packets, nbytes, current.handle, GROUP)
            kept[key] = reading
            out.append(reading)
    if made is not None:
        made.clear()
        made.update(kept)
    return out


def no_table(err: CommandError) -> bool:
    """Whether nft failed because our table does not exist (nothing installed: not an error)."""
    return err.returncode is not None and "No such file or directory" in err.stderr


class NftablesReader:
    """Our table, read after read: over netlink where the runner opens netlink sockets, else ``nft -j``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._made: dict[ReadingKey, IpReading] = {}  # the last read's readings, by what they show
        opener = runner.netlink()
        self._sessions = None if opener is None else sessions(opener)
        self._over_netlink = Fallback("nftables", "nft -j")

    def current(self) -> Current:
        table = (
            None
            if self._sessions is None
            else self._over_netlink(functools.partial(nlnft.read_table, FAMILY, TABLE, self._sessions))
        )
        if table is not None:
            if not table.exists:
                return Current()
            fingerprint = ([c for c in table.chains if c.startswith("fp_")] or [""])[-1]  # as parse_table
            return Current(True, table.handle, fingerprint, table.sets, table.maps, table.chains)
        argv = ("nft", "-j", "list", "table", FAMILY, TABLE)
        try:
            text = self.runner.run(argv)
        except CommandError as err:
            if no_table(err):
                return Current()
            raise
        return parse_table(text, " ".join(argv))

    def read(self) -> tuple[Current, list[IpReading]]:
        current = self.current()
        return current, readings(current, self._made)
