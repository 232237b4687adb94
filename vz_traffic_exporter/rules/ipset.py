"""The ``ipset`` backend: a few iptables rules that match sets with counters.

Compare by hand with ``ipset save`` and ``iptables-save | grep VZTSET``.
Per family, direction and class, a ``hash:ip`` set of container addresses
with per-element ``counters`` (``vztraffic4-out-1``: IPv4 addresses sending
to class 1), and per non-zero class a ``hash:net`` set of its networks made
disjoint (:meth:`ClassTable.disjoint_ranges`), so the class rule is exact.
Per family, a constant number of rules, whatever the number of containers::

    FORWARD -> VZTSET-FORWARD -> VZTSET-OUT, VZTSET-IN
    VZTSET-OUT: -m set --match-set vztraffic4-net-1 dst -m set --match-set vztraffic4-out-1 src -j RETURN
                ...one rule per non-zero class...
                -m set --match-set vztraffic4-out-0 src -j RETURN

INPUT and OUTPUT hook in with ``host_traffic``.  Elements are added and
deleted in place (one ``ipset restore``), so every other element keeps its
counter, and a set holding counters is never re-created; an element is added
with ``packets 0 bytes 0``, as the kernel would otherwise give it whatever a
deleted element left in the slot it reuses; the network sets,
which count nothing, are refilled by ``swap``, atomically.  Each element
carries its creation time as its comment: its epoch.  Chains are named
``VZTSET-*`` and sets ``vztraffic*``; nothing else is ours.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..classes import ClassTable
from ..model import CounterKey, IpReading, canonical_ip, counter_value
from ..netfilter import nlipset, nlnft
from ..netfilter.iptables_save import SavedTable, SaveParser
from ..netfilter.layout import stamp_of
from ..netfilter.netlink import Fallback, Session, sessions
from ..netfilter.xtables import FAMILIES, NFT, Xtables, detect
from ..runner import Runner, output_of
from . import SyncResult
from .iptables import FilterTables, Op, RestoreWriter, Ruleset, plan, remove_family

log = logging.getLogger(__name__)

SET_PREFIX = "vztraffic"
CHAIN_PREFIX = "VZTSET-"
HOOKS = {"FORWARD": ("OUT", "IN"), "INPUT": ("OUT",), "OUTPUT": ("IN",)}
MAXELEM = 262144
_COUNTING = re.compile(rf"^{SET_PREFIX}([46])-(out|in)-(\d+)$")


def counting_set(direction: str, version: int, klass: int) -> str:
    return f"{SET_PREFIX}{version}-{direction}-{klass}"


def net_set(version: int, klass: int) -> str:
    return f"{SET_PREFIX}{version}-net-{klass}"


def parse_counting_set(name: str) -> Optional[tuple[str, int, int]]:
    """(direction, IP version, class) of one of our counting sets, or None."""
    m = _COUNTING.match(name)
    return (m.group(2), int(m.group(1)), int(m.group(3))) if m else None


def _version(family: str) -> int:
    return 4 if family == "ipv4" else 6


@dataclass(frozen=True)
class Wanted:
    counting: dict[str, frozenset[str]]  # set -> container addresses
    nets: dict[str, frozenset[str]]  # set -> CIDRs of one class
    chains: dict[str, dict[str, tuple[str, ...]]]  # family -> chain -> rule specs
    jumps: dict[str, tuple[str, ...]]  # family -> built-in chains that jump to ours


def desired(ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> Wanted:
    addresses: dict[int, set[str]] = {4: set(), 6: set()}
    for ip in ips:
        addresses[ipaddress.ip_address(ip).version].add(ip)
    counting: dict[str, frozenset[str]] = {}
    nets: dict[str, frozenset[str]] = {}
    chains: dict[str, dict[str, tuple[str, ...]]] = {}
    jumps: dict[str, tuple[str, ...]] = {}
    for family in FAMILIES:
        version = _version(family)
        by_class: dict[int, list[str]] = {}
        for first, last, klass in classes.disjoint_ranges(version):
            by_class.setdefault(klass, []).extend(
                str(net) for net in ipaddress.summarize_address_range(first, last)
            )
        for klass, cidrs in by_class.items():
            nets[net_set(version, klass)] = frozenset(cidrs)
        rules: dict[str, tuple[str, ...]] = {}
        for direction, peer, own in (("out", "dst", "src"), ("in", "src", "dst")):
            for klass in classes.ids():
                counting[counting_set(direction, version, klass)] = frozenset(addresses[version])
            specs = [
                f"-m set --match-set {net_set(version, k)} {peer} "
                f"-m set --match-set {counting_set(direction, version, k)} {own} -j RETURN"
                for k in sorted(by_class)
            ]
            specs.append(f"-m set --match-set {counting_set(direction, version, 0)} {own} -j RETURN")
            rules[f"{CHAIN_PREFIX}{direction.upper()}"] = tuple(specs)
        hooked = tuple(h for h in HOOKS if h == "FORWARD" or host_traffic)
        for hook in hooked:
            rules[f"{CHAIN_PREFIX}{hook}"] = tuple(f"-j {CHAIN_PREFIX}{d}" for d in HOOKS[hook])
        chains[family] = rules
        jumps[family] = hooked
    return Wanted(counting, nets, chains, jumps)


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


def plan_sets(current: dict[str, IpsetState], want: Wanted, stamp: int) -> tuple[list[str], list[str]]:
    """(``ipset restore`` lines to run before the rules change, set names to destroy after)."""
    lines: list[str] = []
    for name, elements in want.counting.items():
        family = "inet" if name[len(SET_PREFIX)] == "4" else "inet6"
        have = current.get(name)
        if have is None:
            lines.append(f"create {name} hash:ip family {family} counters comment maxelem {MAXELEM}")
            have = IpsetState("hash:ip", {})
        lines += [f"del {name} {ip}" for ip in sorted(set(have.elements) - elements)]
        # Explicit zeros: the kernel reuses a deleted element's slot, counters and all, for an add that
        # gives none (ip_set_hash_gen.h: mtype_del clears only the used bit; ip_set_init_counter writes
        # only the values an add gives), so an address added without them can start with another's counts.
        added = sorted(elements - set(have.elements))
        lines += [f'add {name} {ip} packets 0 bytes 0 comment "{stamp}"' for ip in added]
    for name, cidrs in want.nets.items():
        family = "inet" if name[len(SET_PREFIX)] == "4" else "inet6"
        have = current.get(name)
        if have is not None and set(have.elements) == cidrs:
            continue
        fresh = name if have is None else f"{name}-new"
        lines.append(f"create {fresh} hash:net family {family} maxelem {MAXELEM}")
        lines += [f"add {fresh} {cidr}" for cidr in sorted(cidrs)]
        if have is not None:  # filled aside, then swapped in: no moment without it
            lines += [f"swap {fresh} {name}", f"destroy {fresh}"]
    wanted = set(want.counting) | set(want.nets)
    return lines, sorted(name for name in current if name not in wanted)


def plan_rules(
    table: SavedTable, chains: dict[str, tuple[str, ...]], hooks: Sequence[str], new_table: bool = False
) -> list[Op]:
    """The rule changes of one family ([] when in sync), planned as the iptables backend plans its own."""
    jumps = tuple((hook, f"-j {CHAIN_PREFIX}{hook}") for hook in hooks)
    return plan(table, Ruleset("", tuple(chains.items()), jumps), prefix=CHAIN_PREFIX, new_table=new_table)


# The wanted sets and rules depend only on these inputs; every poll asks for them again.
_wanted = functools.lru_cache(maxsize=4)(desired)


def _generation(session: Callable[[], Session]) -> int:
    with session() as one:
        return nlnft.generation(one)


class IpsetRules:
    name = "ipset"

    def __init__(self, runner: Runner, variant: Optional[Callable[[], str]] = None) -> None:
        """variant: the host's iptables (LEGACY or NFT), asked when a table may have to be made.  The sets
        are read over netlink where the runner opens netlink sockets, else with ``ipset save``."""
        self.runner = runner
        self._filter = FilterTables(runner, variant or functools.cache(lambda: detect(runner).variant))
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

    def available(self) -> bool:
        # None: not installed, not permitted, or no ip_set in this kernel
        return (
            self.runner.which("iptables") is not None
            and output_of(self.runner, ("ipset", "list", "-n")) is not None
        )

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
        if self._sessions is not None and self._filter.variant() == NFT:
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

    def _plan(
        self, current: Current, want: Wanted, stamp: int
    ) -> tuple[list[str], list[str], dict[str, list[Op]]]:
        set_lines, destroy = plan_sets(current.sets, want, stamp)
        rule_ops = {
            family: plan_rules(
                current.tables.get(family, SavedTable("filter")), want.chains[family], want.jumps[family]
            )
            for family in FAMILIES
        }
        return set_lines, destroy, rule_ops

    def in_sync(self, current: Current, ips: Sequence[str], classes: ClassTable, host_traffic: bool) -> bool:
        set_lines, destroy, rule_ops = self._plan(current, _wanted(tuple(ips), classes, host_traffic), 0)
        return not set_lines and not destroy and not any(rule_ops.values())

    def _apply_rules(self, rule_ops: dict[str, list[Op]]) -> int:
        for family, ops in rule_ops.items():
            if ops:
                self._writer.apply(family, ops)
        return sum(len(ops) for ops in rule_ops.values())

    @property
    def _writer(self) -> RestoreWriter:
        return RestoreWriter(self.runner)  # set matches: libiptc through python-iptables cannot write them

    def sync(self, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> SyncResult:
        stamp = time.time_ns()
        want = _wanted(tuple(ips), classes, host_traffic)
        current = self.current()
        set_lines, destroy, rule_ops = self._plan(current, want, stamp)
        for family, ops in rule_ops.items():
            if ops and self._filter.absent(family):
                table = current.tables.get(family, SavedTable("filter"))
                rule_ops[family] = plan_rules(table, want.chains[family], want.jumps[family], new_table=True)
        if set_lines:
            self.runner.run(("ipset", "restore"), stdin="\n".join(set_lines) + "\n")
        changes = len(set_lines) + self._apply_rules(rule_ops) + len(destroy)
        for name in destroy:
            self.runner.run(("ipset", "destroy", name))
        if changes:
            log.info("ipset: applied %d changes", changes)
        created: list[tuple[CounterKey, Optional[int]]] = []
        for name, elements in want.counting.items():
            parsed = parse_counting_set(name)
            assert parsed is not None
            have = current.sets.get(name)
            for ip in sorted(elements - set(have.elements if have else ())):
                created.append((("ipset", parsed[0], parsed[2], ip), stamp))
        return SyncResult(changes, tuple(created))

    def installed(self) -> bool:
        current = self.current()
        return bool(current.sets) or any(
            c.startswith(CHAIN_PREFIX) for table in current.tables.values() for c in table.policies
        )

    def remove(self) -> int:
        current = self.current()
        changes = 0
        for family in FAMILIES:
            table = current.tables.get(family, SavedTable("filter"))
            changes += remove_family(table, family, self._writer, self._filter, CHAIN_PREFIX)
        for name in current.sets:
            self.runner.run(("ipset", "destroy", name))
            changes += 1
        return changes

    def show(self) -> str:
        out = []
        for family in FAMILIES:
            text = self.runner.run((Xtables.program(family, "save"), "-c", "-t", "filter"))
            out.append(f"# {Xtables.program(family)}")
            out += [line for line in text.splitlines() if CHAIN_PREFIX in line]
        out.append("# ipset")
        out += [line for line in self.runner.run(("ipset", "save")).splitlines() if f" {SET_PREFIX}" in line]
        return "\n".join(out) + "\n"
