"""Rule counters from the ``filter`` table of iptables and ip6tables.

Compare by hand with::

    iptables-save -c -t filter | grep VZTRAFFIC-     # managed rules
    iptables -nvx -L FORWARD                          # adopted rules

Managed mode reads our ``VZTRAFFIC-{IN,OUT}-<class>`` counting chains.
Adopted mode reads the operator's own accounting rules in FORWARD, INPUT and
OUTPUT as the OpenVZ wiki makes them (``iptables -A FORWARD -s <IP>``): a
single ``-s`` (sent, ``out``) or ``-d`` (received, ``in``) host address,
optionally ``-i``/``-o``, and no target; they count in class 0.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass
from typing import Callable, Optional

from ..model import IpReading
from ..runner import Runner
from . import layout
from .iptables_save import SavedRule, SavedTable, SaveParser
from .xtables import FAMILIES, Xtables

log = logging.getLogger(__name__)
_tuple = tuple.__new__

ADOPTED_CHAINS = ("FORWARD", "INPUT", "OUTPUT")


def epochs(table: SavedTable, markers: bool) -> dict[str, int]:
    """Counting chain -> its epoch: the stamp of its epoch rule, 0 when the marker was zeroed."""
    found = {}
    for rule in table.chain_rules(layout.EPOCH_CHAIN):
        parsed = layout.parse_epoch_spec(rule.spec)
        if parsed:
            found[parsed[0]] = 0 if markers and rule.bytes == 0 else parsed[1]
    return found


def epoch_group(family: str, chain: str) -> str:
    return f"{family} {chain}"


def managed_readings(table: SavedTable, markers: bool = True, family: str = "ipv4") -> list[IpReading]:
    """The readings of our counting rules."""
    return _managed(table, epochs(table, markers), family)[0]


def _managed(table: SavedTable, stamps: dict[str, int], family: str) -> tuple[list[IpReading], list[int]]:
    """The readings of our counting rules, and the index of each one's rule."""
    readings, at = [], []
    for i, rule in enumerate(table.rules):
        reading = _managed_reading(rule, stamps.get(rule.chain), family)
        if reading is not None:
            readings.append(reading)
            at.append(i)
    return readings, at


class Follow:
    """Readings of rules, read after read, for one family.

    A table of the last one's shape (see :class:`SaveParser`) read with the
    same key (the epochs) gives the last readings, with new counters where
    its rules are new objects: one comparison per rule, and no parse of a
    rule that did not change.  Any other table is read by make().
    """

    def __init__(self) -> None:
        self._last: Optional[tuple[SavedTable, object, list[IpReading], list[int]]] = None

    def __call__(
        self, table: SavedTable, key: object, make: Callable[[], tuple[list[IpReading], list[int]]]
    ) -> list[IpReading]:
        """make: the readings of the table, and the index of each one's rule."""
        last = self._last
        if last is not None and last[0] is table and last[1] == key:
            return last[2]
        if last is None or last[0].shape is not table.shape or last[1] != key:
            readings, at = make()
        else:
            readings, at = list(last[2]), last[3]
            rules, was = table.rules, last[0].rules
            for k, i in enumerate(at):
                rule = rules[i]
                if rule is not was[i]:  # its counters only: a new tuple made as a tuple, without _replace
                    r = readings[k]
                    readings[k] = _tuple(IpReading, (r[0], r[1], r[2], r[3], rule[2], rule[3], r[6], r[7]))
        self._last = (table, key, readings, at)
        return readings


class ManagedReadings:
    """The readings of our counting rules, read after read, for one family (see :class:`Follow`)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._follow = Follow()

    def __call__(self, table: SavedTable, markers: bool) -> list[IpReading]:
        stamps = epochs(table, markers)
        return self._follow(table, stamps, lambda: _managed(table, stamps, self.family))


def _managed_reading(rule: SavedRule, epoch: Optional[int], family: str) -> Optional[IpReading]:
    parsed = layout.parse_counting_chain(rule.chain)
    if parsed is None:
        return None
    direction, klass = parsed
    ip = layout.parse_counting_spec(direction, rule.spec)
    if ip is None:
        return None
    counter = ("managed", direction, klass, ip)
    group = epoch_group(family, rule.chain)
    return IpReading(counter, ip, klass, direction, rule.packets, rule.bytes, epoch, group)


def parse_adopted_spec(spec: str) -> Optional[tuple[str, str]]:
    """(direction, ip) of a seed-style accounting rule, or None if it is not one."""
    words = spec.split()
    if len(words) % 2:
        return None
    found: Optional[tuple[str, str]] = None
    for flag, value in zip(words[::2], words[1::2]):
        if flag in ("-i", "-o"):
            continue
        if flag not in ("-s", "-d") or found is not None:
            return None
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            return None
        if net.prefixlen != net.max_prefixlen:
            return None
        found = ("out" if flag == "-s" else "in", str(net.network_address))
    return found


def adopted_readings(
    family: str, table: SavedTable, epoch: Optional[int] = None
) -> tuple[list[IpReading], list[SavedRule]]:
    """The readings of the operator's accounting rules, and the rules left out as duplicates.

    Every packet of an address passes every rule for it in a chain: one rule per
    (chain, direction, address) counts, the first; the others would count the
    same packets again.  epoch: the marker's (see :func:`adopted_mark`).
    """
    readings, _, duplicates = _adopted(family, table, epoch)
    return readings, duplicates


def _adopted(
    family: str, table: SavedTable, epoch: Optional[int]
) -> tuple[list[IpReading], list[int], list[SavedRule]]:
    """adopted_readings, with the index of each reading's rule."""
    readings: list[IpReading] = []
    at: list[int] = []
    duplicates = []
    seen: set[tuple[str, str, str]] = set()
    for i, rule in enumerate(table.rules):
        if rule.chain not in ADOPTED_CHAINS:
            continue
        parsed = parse_adopted_spec(rule.spec)
        if parsed is None:
            continue
        direction, ip = parsed
        if (rule.chain, direction, ip) in seen:
            duplicates.append(rule)
            continue
        seen.add((rule.chain, direction, ip))
        counter = ("adopted", family, rule.chain, rule.spec, 0)  # as state files since version 2 have it
        readings.append(IpReading(counter, ip, 0, direction, rule.packets, rule.bytes, epoch))
        at.append(i)
    return readings, at, duplicates


def adopted_mark(table: SavedTable) -> Optional[tuple[int, bool]]:
    """(stamp, zeroed) of adopted mode's marker rule, None when there is none."""
    for rule in table.chain_rules(layout.ADOPTED_MARK_CHAIN):
        stamp = layout.parse_adopted_mark(rule.spec)
        if stamp is not None:
            return stamp, rule.bytes == 0
    return None


@dataclass(frozen=True)
class IptablesRead:
    tables: dict[str, SavedTable]  # family -> filter table as read
    readings: list[IpReading]


class IptablesReader:
    name = "iptables"

    def __init__(self, runner: Runner, adopted: bool, xtables: Optional[Xtables] = None) -> None:
        """xtables: the host's iptables, to know where epoch markers can be read."""
        self.runner = runner
        self.adopted = adopted
        self.xtables = xtables
        # Per family, what the last read parsed: unchanged rules are not parsed again.
        self._parsers = {family: SaveParser() for family in FAMILIES}
        self._managed = {family: ManagedReadings(family) for family in FAMILIES}
        self._adopted = {family: Follow() for family in FAMILIES}
        self._duplicates: dict[str, set[tuple[str, str]]] = {family: set() for family in FAMILIES}

    def _report(self, family: str, duplicates: list[SavedRule]) -> None:
        """Log the duplicate rules once, when they appear."""
        specs = {(r.chain, r.spec) for r in duplicates}
        new = specs - self._duplicates[family]
        self._duplicates[family] = specs
        for chain, spec in sorted(new):
            log.warning(
                "%s: -A %s %s counts the same packets as an earlier rule for that address: "
                "left out, the first one counts",
                Xtables.program(family),
                chain,
                spec,
            )

    def _adopted_readings(
        self, family: str, table: SavedTable, epoch: Optional[int]
    ) -> tuple[list[IpReading], list[int]]:
        found, at, duplicates = _adopted(family, table, epoch)
        self._report(family, duplicates)  # the rules changed: duplicates are said again if new
        return found, at

    def read_table(self, family: str) -> SavedTable:
        argv = [Xtables.program(family, "save"), "-c", "-t", "filter"]
        text = self.runner.run(argv)
        try:
            return self._parsers[family].parse(text).get("filter", SavedTable("filter"))
        except ValueError as err:
            raise ValueError(f"`{' '.join(argv)}` output {err}") from None

    def read(self) -> IptablesRead:
        return self.readings({family: self.read_table(family) for family in FAMILIES})

    def readings(
        self, tables: dict[str, SavedTable], epochs: Optional[dict[str, Optional[int]]] = None
    ) -> IptablesRead:
        """The readings of tables as read; epochs: adopted mode's, per family (see :func:`adopted_mark`)."""
        readings: list[IpReading] = []
        for family, table in tables.items():
            if self.adopted:
                epoch = (epochs or {}).get(family)
                make = functools.partial(self._adopted_readings, family, table, epoch)
                readings += self._adopted[family](table, epoch, make)
            else:
                markers = self.xtables.sets_counters(family) if self.xtables else False
                readings += self._managed[family](table, markers)
        return IptablesRead(tables, readings)
