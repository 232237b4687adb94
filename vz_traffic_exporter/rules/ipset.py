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
``VZTSET-*`` and sets ``vztraffic*``; nothing else is ours.  Reading them is
:mod:`..netfilter.ipset`'s.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from ..classes import ClassTable
from ..model import CounterKey, IpReading
from ..netfilter.ipset import (
    CHAIN_PREFIX,
    SET_PREFIX,
    Current,
    IpsetReader,
    IpsetState,
    counting_set,
    net_set,
    parse_counting_set,
)
from ..netfilter.iptables_save import SavedTable
from ..netfilter.xtables import FAMILIES, Xtables, detect
from ..runner import Runner, output_of
from . import SyncResult
from .iptables import FilterTables, Op, RestoreWriter, Ruleset, plan, remove_family

log = logging.getLogger(__name__)

HOOKS = {"FORWARD": ("OUT", "IN"), "INPUT": ("OUT",), "OUTPUT": ("IN",)}
MAXELEM = 262144


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


class IpsetRules:
    name = "ipset"

    def __init__(self, runner: Runner, variant: Optional[Callable[[], str]] = None) -> None:
        """variant: the host's iptables (LEGACY or NFT), asked when a table may have to be made."""
        self.runner = runner
        self._filter = FilterTables(runner, variant or functools.cache(lambda: detect(runner).variant))
        self.reader = IpsetReader(runner, self._filter.variant)

    def available(self) -> bool:
        # None: not installed, not permitted, or no ip_set in this kernel
        return (
            self.runner.which("iptables") is not None
            and output_of(self.runner, ("ipset", "list", "-n")) is not None
        )

    def current(self) -> Current:
        return self.reader.current()

    def read(self) -> tuple[Current, list[IpReading]]:
        return self.reader.read()

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
