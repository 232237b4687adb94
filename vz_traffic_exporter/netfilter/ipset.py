"""Reading our ipset objects: the ``vztraffic*`` sets, over netlink or from ``ipset save``, and the
``VZTSET-*`` hooks in the filter tables.

What :mod:`..rules.ipset` writes, read back: per family, direction and
class, a ``hash:ip`` counting set (``vztraffic4-out-1``: IPv4 addresses
sending to class 1) whose elements carry counters and, as their comment,
their creation time (their epoch); and per class a ``hash:net`` set of its
networks.  The counting sets' elements are :class:`~..model.IpReading`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..model import CounterKey, IpReading, canonical_ip, counter_value
from ..runner import Runner
from . import nlipset, nlnft
from .iptables_save import SavedTable, SaveParser
from .layout import stamp_of
from .netlink import Fallback, Session, sessions
from .xtables import FAMILIES, NFT, Xtables

SET_PREFIX = "vztraffic"


CHAIN_PREFIX = "VZTSET-"


_COUNTING = re.compile(rf"^{SET_PREFIX}([46])-(out|in)-(\d+)$")


def counting_set(direction: str, version: int, klass: int) -> str:
    return f"{SET_PREFIX}{version}-{direction}-{klass}"


def net_set(version: int, klass: int) -> str:
    return f"{SET_PREFIX}{version}-net-{klass}"


def parse_counting_set(name: str) -> Optional[tuple[str, int, int]]:
    """(direction, IP version, class) of one of our counting sets, or None."""
    m = _COUNTING.match(name)
    return (m.group(2), int(m.group(1)), int(m.group(3))) if m else None


@dataclass
class IpsetState:
    type: str
    elements: dict[str, tuple[int, int, Optional[int]]]  # element -> (packets, bytes, stamp)


@dataclass
class Current:
    sets: dict[str, IpsetState] = field(default_factory=dict)  # ours only
    tables: dict[str, SavedTable] = field(default_factory=dict)  # family -> filter table


Values = tuple[int, int, Optional[int]]  # packets, bytes, stamp


Counting = tuple[CounterKey, str, int]  # a counting set element's counter, direction and class


class SaveReader:
    """Reads ``ipset save`` output, read after read.

    Each element line is split where its counters start: the part before
    names the set and element, and is parsed once for as long as the element
    lasts; the rest is parsed again only when it changed, and when it did not,
    the element's reading is the same object as the last read's, which lets
    the accounting pass over idle counters.
    """

    def __init__(self) -> None:
        # "add SET ELEMENT" -> (set, set type, element, counting or None, rest of the line, values, reading)
        self._heads: dict[
            str, tuple[str, str, str, Optional[Counting], str, Values, Optional[IpReading]]
        ] = {}

    def read(self, text: str, where: str = "ipset save") -> tuple[dict[str, IpsetState], list[IpReading]]:
        """Our sets with their elements and counters, and the readings of the counting sets."""
        sets: dict[str, IpsetState] = {}
        out: list[IpReading] = []
        old = self._heads
        heads = {}
        for number, line in enumerate(text.splitlines(), 1):
            head, _, rest = line.partition(" packets ")
            hit = old.get(head)
            if hit is not None:
                state = sets.get(hit[0])
                if state is not None and state.type == hit[1]:
                    if hit[2] in state.elements:
                        raise ValueError(f"{where}: line {number}: {hit[0]} {hit[2]} appears twice")
                    if rest != hit[4]:  # the counters moved: a new reading
                        values = _fast_values(rest) or _values(line.split()[3:])
                        hit = (*hit[:4], rest, values, _reading(hit[0], hit[2], hit[3], values))
                    state.elements[hit[2]] = hit[5]
                    if hit[6] is not None:
                        out.append(hit[6])
                    heads[head] = hit
                    continue
            words = line.split()
            if not words or not words[1:] or not words[1].startswith(SET_PREFIX):
                continue
            if words[0] == "create":
                sets[words[1]] = IpsetState(words[2] if len(words) > 2 else "", {})
            elif words[0] == "add":
                state = sets.get(words[1])
                if state is None or len(words) < 3:
                    raise ValueError(f"{where}: line {number}: unexpected {line!r}")
                try:
                    element, values = _element(state.type, words[2]), _values(words[3:])
                except ValueError as err:
                    raise ValueError(f"{where}: line {number}: {err}: {line[:200]!r}") from None
                if element in state.elements:
                    raise ValueError(f"{where}: line {number}: {words[1]} {element} appears twice")
                state.elements[element] = values
                counting = _counting(words[1], element)
                reading = _reading(words[1], element, counting, values)
                if reading is not None:
                    out.append(reading)
                heads[head] = (words[1], state.type, element, counting, rest, values, reading)
        self._heads = heads
        return sets, out


def parse_ipset_save(text: str, where: str = "ipset save") -> dict[str, IpsetState]:
    """Our sets in ``ipset save`` output, with their elements and counters."""
    return SaveReader().read(text, where)[0]


def _element(set_type: str, text: str) -> str:
    return ipaddress.ip_network(text).with_prefixlen if set_type == "hash:net" else canonical_ip(text)


def _values(words: Sequence[str]) -> Values:
    """(packets, bytes, stamp) from the words after an element: packets N bytes N comment "S"."""
    packets = nbytes = 0
    stamp = None
    for key, value in zip(words[::2], words[1::2]):
        if key == "packets":
            packets = counter_value(value, "packets")
        elif key == "bytes":
            nbytes = counter_value(value, "bytes")
        elif key == "comment":
            stamp = _stamp(value)
    return packets, nbytes, stamp


def _fast_values(rest: str) -> Optional[Values]:
    """The values from what follows "packets " as ``ipset save`` writes it: N bytes N [comment "S"]."""
    words = rest.split()
    if len(words) not in (3, 5) or words[1] != "bytes" or not (words[0].isdigit() and words[2].isdigit()):
        return None
    if len(words[0]) > 19 or len(words[2]) > 19:  # may be 2**64 or more: checked by _values
        return None
    if len(words) == 3:
        return int(words[0]), int(words[2]), None
    return (int(words[0]), int(words[2]), _stamp(words[4])) if words[3] == "comment" else None


@functools.lru_cache(maxsize=256)  # elements made by one sync share one stamp
def _stamp(comment: str) -> Optional[int]:
    return stamp_of(comment.strip('"'))


@functools.cache
def _set_kind(name: str) -> Optional[tuple[str, int, int]]:
    return parse_counting_set(name)


def _part(
    name: str, parsed: Optional[tuple[str, int, int]], part: nlipset.Elements
) -> tuple[dict[str, Values], list[IpReading]]:
    """The values (the comment read as a stamp) and, in a counting set, the readings of some elements."""
    stamps: dict[Optional[str], Optional[int]] = {None: None}
    values = {}
    for ip, (packets, nbytes, comment) in part.items():
        stamp = stamps.get(comment, 0)
        if stamp == 0:
            stamp = stamps[comment] = _stamp(comment or "")
        values[ip] = (packets, nbytes, stamp)
    if parsed is None:
        return values, []
    direction, _, klass = parsed
    return values, [
        IpReading(("ipset", direction, klass, ip), ip, klass, direction, *value, name)
        for ip, value in values.items()
    ]


def _counting(name: str, ip: str) -> Optional[Counting]:
    parsed = _set_kind(name)
    if parsed is None:
        return None
    direction, _, klass = parsed
    return ("ipset", direction, klass, ip), direction, klass


def _reading(name: str, ip: str, counting: Optional[Counting], values: Values) -> Optional[IpReading]:
    if counting is None:
        return None
    counter, direction, klass = counting
    packets, nbytes, stamp = values
    return IpReading(counter, ip, klass, direction, packets, nbytes, stamp, name)


def readings(sets: dict[str, IpsetState]) -> list[IpReading]:
    """The readings of the counting sets' elements."""
    out = []
    for name, state in sets.items():
        for ip, values in state.elements.items():
            reading = _reading(name, ip, _counting(name, ip), values)
            if reading is not None:
                out.append(reading)
    return out


def _generation(session: Callable[[], Session]) -> int:
    with session() as one:
        return nlnft.generation(one)


class IpsetReader:
    """Our sets and the filter tables' hooks, read after read: the sets over netlink where the runner opens
    netlink sockets, else from ``ipset save``."""

    def __init__(self, runner: Runner, variant: Callable[[], str]) -> None:
        """variant: the host's iptables (LEGACY or NFT): with NFT, the filter tables are read again only
        when the ruleset generation moved."""
        self.runner = runner
        self._variant = variant
        self._reader = SaveReader()
        opener = runner.netlink()
        self._sessions = None if opener is None else sessions(opener)
        self._over_netlink = Fallback("ipset", "ipset save")
        self._dump = None if self._sessions is None else nlipset.SetReader(SET_PREFIX, self._sessions)
        # id(elements of one message) -> (them, their set, their values, their readings), of the last read
        self._made: dict[int, tuple[nlipset.Elements, str, dict[str, Values], list[IpReading]]] = {}
        self._generation = Fallback("the nf_tables generation", "iptables-save at every read")
        # The filter tables as last read, and the ruleset generation they were read at (None: unknown).
        self._read_at: tuple[Optional[int], dict[str, SavedTable]] = (None, {})
        # Every read checks the hooks in the filter tables: their unchanged lines are not parsed again.
        self._tables = {family: SaveParser() for family in FAMILIES}

    def current(self) -> Current:
        return self._current()[0]

    def _sets(self) -> tuple[dict[str, IpsetState], list[IpReading]]:
        """Our sets and the counting sets' readings: over netlink where it works, else from ``ipset save``."""
        dumped = None if self._dump is None else self._over_netlink(self._dump)
        if dumped is not None:
            return self._from_dump(dumped)
        return self._reader.read(self.runner.run(("ipset", "save")))

    def _from_dump(self, dumped: nlipset.SetDump) -> tuple[dict[str, IpsetState], list[IpReading]]:
        """The sets and readings of a netlink dump.  A message's elements that are the same object as in the
        dump before (the same bytes) give the same elements and readings as then, made once."""
        made, kept = self._made, {}
        out: list[IpReading] = []
        sets = {}
        for name, (kind, _) in dumped.sets.items():
            parsed = _set_kind(name)
            elements: dict[str, tuple[int, int, Optional[int]]] = {}
            for part in dumped.parts[name]:
                hit = made.get(id(part))
                if hit is None or hit[0] is not part or hit[1] != name:
                    hit = (part, name, *_part(name, parsed, part))
                kept[id(part)] = hit
                elements.update(hit[2])
                out += hit[3]
            sets[name] = IpsetState(kind, elements)
        self._made = kept
        return sets, out

    def _current(self) -> tuple[Current, list[IpReading]]:
        sets, found = self._sets()
        return Current(sets, self._filter_tables()), found

    def _filter_tables(self) -> dict[str, SavedTable]:
        """The filter tables, for our rules: read again only when the nf_tables ruleset changed since (with
        iptables-nft and netlink; legacy iptables has no generation to ask: read every time)."""
        generation = None
        if self._sessions is not None and self._variant() == NFT:
            generation = self._generation(functools.partial(_generation, self._sessions))
            if generation is not None and generation == self._read_at[0]:
                return self._read_at[1]
        tables = {}
        for family in FAMILIES:
            text = self.runner.run((Xtables.program(family, "save"), "-t", "filter"))
            tables[family] = self._tables[family].parse(text).get("filter", SavedTable("filter"))
        self._read_at = (generation, tables)
        return tables

    def read(self) -> tuple[Current, list[IpReading]]:
        return self._current()
