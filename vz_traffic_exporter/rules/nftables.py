"""The ``nftables`` backend: one table of our own, ``inet vz_traffic``.

Compare by hand with ``nft list table inet vz_traffic``.  Per family,
direction and class, a set of container addresses with per-element counters
(``out4_1``: IPv4 addresses sending to class 1).  A packet costs a few hash
and interval lookups, whatever the number of containers::

    chain forward { type filter hook forward priority filter - 5; policy accept;
                    jump count_out; jump count_in }
    chain count_out { ip daddr vmap @cls4_out      # peer in a class-1.. range:
                      ip6 daddr vmap @cls6_out     #   goto cnt_out4_<class>
                      ip saddr @out4_0             # else class 0
                      ip6 saddr @out6_0 }
    chain cnt_out4_1 { ip saddr @out4_1 }          # the lookup counts the element

``input`` (``count_out``) and ``output`` (``count_in``) hook in with
``host_traffic``.  The class maps hold disjoint ranges
(:meth:`ClassTable.disjoint_ranges`), so the OpenVZ class rule holds exactly.
Nothing here drops: our chains accept, and another table's drop still drops.

A sync is one ``nft -f`` transaction.  Set elements are added and deleted in
place, so every other element keeps its counter; the rest (maps and chains)
is rebuilt only when its fingerprint differs: the name of an empty chain,
``fp_<hash of the rest>`` (nft's JSON shows names, not comments).  The
table's handle is the counters' epoch: a table re-created by anyone starts
every counter from zero.  Reading the table is :mod:`..netfilter.nftables`'s.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from ..classes import ClassTable
from ..model import CounterKey, IpReading
from ..netfilter.nftables import (
    FAMILY,
    TABLE,
    WHERE,
    Current,
    NftablesReader,
    no_table,
    parse_set_name,
    set_name,
)
from ..runner import CommandError, Runner, output_of
from . import SyncResult

log = logging.getLogger(__name__)

FAMILIES = ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr"))
_PEER = {"out": "daddr", "in": "saddr"}  # the peer decides the class
_OWN = {"out": "saddr", "in": "daddr"}  # the container's address is counted


@dataclass(frozen=True)
class Wanted:
    """The whole table as data: set elements, and the structure as nft text."""

    sets: dict[str, frozenset[str]]
    structure: str  # maps and chains
    fingerprint: str


def desired(ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> Wanted:
    addresses: dict[int, set[str]] = {4: set(), 6: set()}
    for ip in ips:
        addresses[ipaddress.ip_address(ip).version].add(ip)
    sets: dict[str, frozenset[str]] = {}
    blocks: list[str] = []
    for direction in ("out", "in"):
        count: list[str] = []
        for version, proto, addr_type in FAMILIES:
            ranges = classes.disjoint_ranges(version)
            for klass in classes.ids():
                sets[set_name(direction, version, klass)] = frozenset(addresses[version])
            body = [f"type {addr_type} : verdict", "flags interval"]
            if ranges:
                targets = (f"{a}-{b} : goto cnt_{set_name(direction, version, k)}" for a, b, k in ranges)
                body.append(f"elements = {{ {', '.join(targets)} }}")
            blocks.append(_block(f"map cls{version}_{direction}", body))
            for klass in sorted({klass for _, _, klass in ranges}):
                name = set_name(direction, version, klass)
                blocks.append(_block(f"chain cnt_{name}", [f"{proto} {_OWN[direction]} @{name}"]))
            count.append(f"{proto} {_PEER[direction]} vmap @cls{version}_{direction}")
            count.append(f"{proto} {_OWN[direction]} @{set_name(direction, version, 0)}")
        blocks.append(_block(f"chain count_{direction}", count))
    hooks = {"forward": ("out", "in"), "input": ("out",), "output": ("in",)}
    for hook, directions in hooks.items():
        if hook == "forward" or host_traffic:
            body = [f"type filter hook {hook} priority filter - 5; policy accept;"]
            blocks.append(_block(f"chain {hook}", body + [f"jump count_{d}" for d in directions]))
    fingerprint = "fp_" + hashlib.sha256("\n".join(blocks).encode()).hexdigest()[:16]
    blocks.append(_block(f"chain {fingerprint}", []))  # never jumped to: names what the rest is
    return Wanted(sets, "\n".join(blocks), fingerprint)


def _block(head: str, body: Sequence[str]) -> str:
    """One nft object in the multi-line form every nft version reads."""
    return "\n".join([f"\t{head} {{", *(f"\t\t{line}" for line in body), "\t}"])


def plan(current: Current, want: Wanted) -> list[str]:
    """The lines of one ``nft -f`` transaction that turn current into want ([] when in sync)."""
    lines: list[str] = []
    rebuild = not current.exists or current.fingerprint != want.fingerprint
    if rebuild:
        if current.exists:
            lines.append(f"flush table {WHERE}")
            lines += [f"delete chain {WHERE} {name}" for name in current.chains]
            lines += [f"delete map {WHERE} {name}" for name in current.maps]
        else:
            lines.append(f"add table {WHERE}")
    lines += [f"delete set {WHERE} {name}" for name in current.sets if name not in want.sets]
    for name, elements in want.sets.items():
        have = current.sets.get(name)
        if have is None:
            addr_type = "ipv4_addr" if name.split("_")[0].endswith("4") else "ipv6_addr"
            lines.append(f"add set {WHERE} {name} {{ type {addr_type}; counter; }}")
            have = {}
        extra = sorted(set(have) - elements)
        missing = sorted(elements - set(have))
        if extra:
            lines.append(f"delete element {WHERE} {name} {{ {', '.join(extra)} }}")
        if missing:
            lines.append(f"add element {WHERE} {name} {{ {', '.join(missing)} }}")
    if rebuild:
        lines.append(f"table {WHERE} {{\n{want.structure}\n}}")
    return lines


# The wanted table depends only on these inputs; every poll asks for it again.
_wanted = functools.lru_cache(maxsize=4)(desired)


class NftablesRules:
    name = "nftables"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.reader = NftablesReader(runner)

    def available(self) -> bool:
        return output_of(self.runner, ("nft", "list", "tables")) is not None

    def current(self) -> Current:
        return self.reader.current()

    def read(self) -> tuple[Current, list[IpReading]]:
        return self.reader.read()

    def in_sync(self, current: Current, ips: Sequence[str], classes: ClassTable, host_traffic: bool) -> bool:
        return not plan(current, _wanted(tuple(ips), classes, host_traffic))

    def sync(self, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> SyncResult:
        before = self.current()
        want = _wanted(tuple(ips), classes, host_traffic)
        lines = plan(before, want)
        if not lines:
            return SyncResult(0)
        log.info("nftables: applying %d changes to table %s", len(lines), WHERE)
        self.runner.run(("nft", "-f", "-"), stdin="\n".join(lines) + "\n")
        # A plan never deletes the table: only a new one has a handle still to learn.
        handle = before.handle if before.exists else self.current().handle
        fresh = not before.exists
        created: list[tuple[CounterKey, Optional[int]]] = []
        for name, elements in want.sets.items():
            parsed = parse_set_name(name)
            assert parsed is not None
            direction, _, klass = parsed
            old = set() if fresh else set(before.sets.get(name, {}))
            created += [(("nftables", direction, klass, ip), handle) for ip in sorted(elements - old)]
        return SyncResult(len(lines), tuple(created))

    def installed(self) -> bool:
        return self.current().exists

    def remove(self) -> int:
        if not self.current().exists:
            return 0
        self.runner.run(("nft", "delete", "table", FAMILY, TABLE))
        return 1

    def show(self) -> str:
        try:
            return self.runner.run(("nft", "list", "table", FAMILY, TABLE))
        except CommandError as err:
            if no_table(err):
                return f"# no table {WHERE}\n"
            raise
