"""The ``iptables`` backend: our accounting chains, as data, applied atomically.

:func:`desired` builds the wanted rule set of one family as plain data;
:func:`plan` diffs it against the live ``filter`` table into a list of
operations; a writer applies the list as one transaction:

- :class:`RestoreWriter`: one ``iptables-restore --noflush -w`` (both variants);
- :class:`LibiptcWriter`: one libiptc commit through python-iptables, on hosts
  whose iptables is the legacy one (python-iptables cannot see nf_tables).

Counting rules are diffed, never flushed, so a re-sync keeps the counters of
every unchanged rule; an empty plan touches nothing.  Each counting chain has
an epoch rule (see :mod:`..netfilter.layout`), stamped when the chain is made;
its marker is set again when a read finds it zeroed.  Only chains named
``VZTRAFFIC-*`` and the jumps to them are ever written.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from ..accounting import CounterKey
from ..discovery.classes import ClassTable
from ..netfilter import layout
from ..netfilter.iptables_save import SavedTable, parse_iptables_save
from ..netfilter.xtables import FAMILIES, LEGACY, Xtables
from ..runner import Runner
from ..sources import IpReading
from ..sources.iptables import IptablesSource, epoch_group
from . import SyncResult

log = logging.getLogger(__name__)

FILTER = "filter"


# --- the wanted state, as data --------------------------------------------


@dataclass(frozen=True)
class Ruleset:
    """Our chains of one family, each with its rules in order, and the jumps to them."""

    family: str
    chains: tuple[tuple[str, tuple[str, ...]], ...]
    jumps: tuple[tuple[str, str], ...]  # (built-in chain, rule spec)
    epochs: tuple[str, ...] = ()  # the counting chains, each with one epoch rule

    def chain_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.chains)


def _family_of(ip: str) -> str:
    return "ipv4" if ipaddress.ip_address(ip).version == 4 else "ipv6"


def desired(family: str, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> Ruleset:
    version = 4 if family == "ipv4" else 6
    mine = sorted((ip for ip in ips if _family_of(ip) == family), key=ipaddress.ip_address)
    chains: list[tuple[str, tuple[str, ...]]] = []
    for direction in layout.DIRECTIONS:
        peer = "-d" if direction == "out" else "-s"
        classify = tuple(
            f"{peer} {net} -g {layout.counting_chain(direction, klass)}"
            for net, klass in classes.ordered_networks(version)
        )
        classify += (f"-g {layout.counting_chain(direction, 0)}",)
        chains.append((layout.classify_chain(direction), classify))
        for klass in classes.ids():
            specs = tuple(layout.counting_spec(direction, ip) for ip in mine)
            chains.append((layout.counting_chain(direction, klass), specs))
    entries = {
        "FORWARD": ("out", "in"),
        "INPUT": ("out",) if host_traffic else (),
        "OUTPUT": ("in",) if host_traffic else (),
    }
    jumps = []
    for hook in layout.HOOKS:
        if entries[hook]:
            steps = tuple(f"-j {layout.classify_chain(d)}" for d in entries[hook])
            chains.append((layout.entry_chain(hook), steps))
            jumps.append((hook, f"-j {layout.entry_chain(hook)}"))
    epochs = tuple(name for name, _ in chains if _is_counting(name))
    return Ruleset(family, tuple(chains), tuple(jumps), epochs)


# The wanted rules depend only on these inputs; every poll asks for them again.
_wanted = functools.lru_cache(maxsize=4)(desired)


# --- the diff -------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One step of a transaction: new, flush, delete_chain, append, insert, delete."""

    action: str
    chain: str
    spec: str = ""
    counters: Optional[tuple[int, int]] = None  # (packets, bytes) of an appended rule

    def restore_line(self) -> str:
        prefix = f"[{self.counters[0]}:{self.counters[1]}] " if self.counters else ""
        return (
            prefix
            + {
                "new": f":{self.chain} - [0:0]",
                "flush": f"-F {self.chain}",
                "delete_chain": f"-X {self.chain}",
                "append": f"-A {self.chain} {self.spec}",
                "insert": f"-I {self.chain} 1 {self.spec}",
                "delete": f"-D {self.chain} {self.spec}",
            }[self.action]
        )


def _is_counting(chain: str) -> bool:
    return layout.parse_counting_chain(chain) is not None


MARKER = (0, 1)  # the counters of an epoch rule that was not zeroed


def plan(
    current: SavedTable,
    want: Optional[Ruleset],
    stamp: Optional[int] = None,
    markers: bool = True,
    prefix: str = layout.PREFIX,
) -> list[Op]:
    """Operations that turn current into want (want None: remove everything of ours).

    Ours are the chains named prefix* and the jumps to them.  New epoch rules
    get the stamp (default: the time in ns).  With markers, current must carry
    counters: an epoch rule whose marker reads zero gets it again.
    """
    wanted = want.chain_map() if want else {}
    made = list(wanted) + ([layout.EPOCH_CHAIN] if want and want.epochs else [])
    ours = [c for c in current.policies if c.startswith(prefix)]
    ops: list[Op] = [Op("new", chain) for chain in made if chain not in current.policies]
    if want and want.epochs:
        ops += _epoch_ops(current, want.epochs, time.time_ns() if stamp is None else stamp, markers)
    for chain, specs in wanted.items():
        have = [r.spec for r in current.chain_rules(chain)]
        if _is_counting(chain):
            # Order does not matter here: delete what is extra, append what is missing,
            # and every other rule keeps its counters.
            ops += [Op("delete", chain, s) for s in _surplus(have, specs)]
            ops += [Op("append", chain, s) for s in _surplus(specs, have)]
        elif have != list(specs):
            ops.append(Op("flush", chain))
            ops += [Op("append", chain, s) for s in specs]
    jumps = dict(want.jumps) if want else {}
    for hook in layout.HOOKS:
        have = [r.spec for r in current.chain_rules(hook) if _targets_ours(r.spec, prefix)]
        wanted_jump = jumps.get(hook)
        keep = [wanted_jump] if wanted_jump else []
        ops += [Op("delete", hook, s) for s in _surplus(have, keep)]
        if wanted_jump and wanted_jump not in have:
            ops.append(Op("insert", hook, wanted_jump))
    obsolete = [c for c in ours if c not in made]
    ops += [Op("flush", c) for c in obsolete if current.chain_rules(c)]
    ops += [Op("delete_chain", c) for c in obsolete]
    return ops


def _epoch_ops(current: SavedTable, chains: Sequence[str], stamp: int, markers: bool) -> list[Op]:
    """One epoch rule per counting chain: extra ones deleted, missing ones made, zeroed markers set."""
    ops, found = [], {}
    for rule in current.chain_rules(layout.EPOCH_CHAIN):
        parsed = layout.parse_epoch_spec(rule.spec)
        if parsed is None or parsed[0] not in chains or parsed[0] in found:
            ops.append(Op("delete", layout.EPOCH_CHAIN, layout.epoch_spec(*parsed) if parsed else rule.spec))
        else:
            found[parsed[0]] = (parsed[1], rule.bytes)
    for chain in chains:
        if chain not in found:
            ops.append(
                Op("append", layout.EPOCH_CHAIN, layout.epoch_spec(chain, stamp), MARKER if markers else None)
            )
        elif markers and found[chain][1] == 0:
            spec = layout.epoch_spec(chain, found[chain][0])
            ops += [Op("delete", layout.EPOCH_CHAIN, spec), Op("append", layout.EPOCH_CHAIN, spec, MARKER)]
    return ops


def _surplus(have: Sequence[str], want: Sequence[str]) -> list[str]:
    """The entries of have beyond what want holds (multiset difference, in order)."""
    extra = Counter(have) - Counter(want)
    out = []
    for spec in have:
        if extra[spec] > 0:
            extra[spec] -= 1
            out.append(spec)
    return out


def _targets_ours(spec: str, prefix: str = layout.PREFIX) -> bool:
    target = layout.jump_target(spec)
    return target is not None and target.startswith(prefix)


def new_counting_rules(ops: Sequence[Op]) -> list[tuple[str, int, str]]:
    """(direction, class, ip) of each counting rule a plan creates (starting at zero)."""
    created = []
    for op in ops:
        parsed = layout.parse_counting_chain(op.chain) if op.action == "append" else None
        if parsed:
            ip = layout.parse_counting_spec(parsed[0], op.spec)
            if ip:
                created.append((parsed[0], parsed[1], ip))
    return created


def new_epochs(ops: Sequence[Op]) -> dict[str, int]:
    """Counting chain -> the stamp of each epoch rule a plan makes or marks again."""
    made = (
        layout.parse_epoch_spec(op.spec)
        for op in ops
        if op.action == "append" and op.chain == layout.EPOCH_CHAIN
    )
    return dict(parsed for parsed in made if parsed)


# --- writers --------------------------------------------------------------


class Writer(Protocol):
    def apply(self, family: str, ops: Sequence[Op]) -> None: ...


@dataclass
class RestoreWriter:
    runner: Runner

    def apply(self, family: str, ops: Sequence[Op]) -> None:
        text = "\n".join([f"*{FILTER}", *(op.restore_line() for op in ops), "COMMIT", ""])
        argv = [Xtables.program(family, "restore"), "-w", "5", "--noflush"]
        if any(op.counters for op in ops):
            argv.append("--counters")
        self.runner.run(argv, stdin=text)


_LIBIPTC_LOCK = threading.Lock()  # python-iptables is not thread-safe


class LibiptcWriter:
    """One libiptc transaction per family through python-iptables (legacy only).

    libiptc keeps the counters of every rule it does not change, and its
    commit fails if the table changed since the snapshot; we hold the xtables
    lock from snapshot to commit so that ``iptables -w`` users wait for us.
    """

    lock_path = os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")

    def apply(self, family: str, ops: Sequence[Op]) -> None:
        import iptc  # imported late: loading it has side effects (modprobe)

        with _LIBIPTC_LOCK, _xtables_lock(self.lock_path):
            table_class = iptc.Table if family == "ipv4" else iptc.Table6
            table = table_class(table_class.FILTER, autocommit=False)
            table.refresh()
            try:
                for op in ops:
                    self._apply_one(iptc, table, family, op)
                table.commit()
            finally:
                table.refresh()

    def _apply_one(self, iptc: Any, table: Any, family: str, op: Op) -> None:
        if op.action == "new":
            table.create_chain(op.chain)
        elif op.action == "delete_chain":
            table.delete_chain(op.chain)
        else:
            chain = iptc.Chain(table, op.chain)
            if op.action == "flush":
                chain.flush()
            elif op.action == "append":
                rule = _to_iptc(iptc, family, op.spec)
                if op.counters:
                    rule.counters = op.counters
                chain.append_rule(rule)
            elif op.action == "insert":
                chain.insert_rule(_to_iptc(iptc, family, op.spec))
            elif op.action == "delete":
                for rule in chain.rules:
                    if _from_iptc(rule) == op.spec:
                        chain.delete_rule(rule)
                        break
                else:
                    raise RuntimeError(f"rule to delete not found: -A {op.chain} {op.spec}")


class _xtables_lock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as err:
            log.debug("xtables lock %s not taken: %s", self.path, err)
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock
            self.fd = -1


def _to_iptc(iptc: Any, family: str, spec: str) -> Any:
    """An iptc rule for one of our own specs (-s/-d, a comment, then -j/-g)."""
    rule = iptc.Rule() if family == "ipv4" else iptc.Rule6()
    words = spec.split()
    target, goto = "", False
    for flag, value in zip(words[::2], words[1::2]):
        if flag == "-m" and value == "comment":
            continue
        if flag == "--comment":
            rule.create_match("comment").comment = value
        elif flag == "-s":
            rule.src = value
        elif flag == "-d":
            rule.dst = value
        elif flag in ("-j", "-g"):
            target, goto = value, flag == "-g"
        else:
            raise ValueError(f"not one of our rule specs: {spec!r}")
    rule.target = rule.create_target(target, goto=goto)
    return rule


def _from_iptc(rule: Any) -> str:
    """The iptables-save form of a rule with at most -s, -d, a comment, -j/-g."""
    parts = []
    for flag, value in (("-s", rule.src), ("-d", rule.dst)):
        net = ipaddress.ip_network(_cidr(value), strict=False)
        if net.prefixlen:
            parts.append(f"{flag} {net}")
    for match in rule.matches:
        if match.name == "comment":
            parts.append(f"-m comment --comment {match.comment}")
    if rule.target is not None and rule.target.name:
        parts.append(f"{'-g' if rule.target.goto else '-j'} {rule.target.name}")
    return " ".join(parts)


def _cidr(value: str) -> str:
    addr, _, mask = value.partition("/")
    if mask and "." in mask:
        return f"{addr}/{ipaddress.IPv4Address(mask).compressed}"
    return value


# --- the backend ----------------------------------------------------------


class IptablesRules:
    name = "iptables"

    def __init__(self, runner: Runner, xtables: Xtables, writer: Optional[Writer] = None) -> None:
        self.runner = runner
        self.xtables = xtables
        if writer is None:
            writer = LibiptcWriter() if xtables.variant == LEGACY else RestoreWriter(runner)
        self.writer = writer
        self._source = IptablesSource(runner, adopted=False, xtables=xtables)

    def current(self, family: str) -> SavedTable:
        text = self.runner.run([Xtables.program(family, "save"), "-c", "-t", FILTER])
        return parse_iptables_save(text).get(FILTER, SavedTable(FILTER))

    def sync(self, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> SyncResult:
        ips = tuple(ips)
        changes = 0
        created: list[tuple[CounterKey, Optional[int]]] = []
        restamped: dict[str, int] = {}
        for family in FAMILIES:
            want = _wanted(family, ips, classes, host_traffic)
            current = self.current(family)
            ops = plan(current, want, markers=self.xtables.sets_counters(family))
            if ops:
                log.info("%s: applying %d rule changes", family, len(ops))
                self.writer.apply(family, ops)
            changes += len(ops)
            stamps = new_epochs(ops)
            new_chains = {op.chain for op in ops if op.action == "new"}
            for chain, stamp in stamps.items():
                if chain not in new_chains:  # a marker set again: the counters go on
                    restamped[epoch_group(family, chain)] = stamp
            for direction, klass, ip in new_counting_rules(ops):
                stamp_of_chain = stamps.get(layout.counting_chain(direction, klass))
                created.append((("managed", direction, klass, ip), stamp_of_chain))
        return SyncResult(changes, tuple(created), restamped)

    def in_sync(
        self, tables: dict[str, SavedTable], ips: Sequence[str], classes: ClassTable, host_traffic: bool
    ) -> bool:
        """Whether the given live tables already hold exactly the wanted rules."""
        return all(
            not plan(
                tables.get(family, SavedTable(FILTER)),
                _wanted(family, tuple(ips), classes, host_traffic),
                markers=self.xtables.sets_counters(family),
            )
            for family in FAMILIES
        )

    def read(self) -> tuple[dict[str, SavedTable], list[IpReading]]:
        read = self._source.read()
        return read.tables, read.readings

    def available(self) -> bool:
        return self.runner.which("iptables") is not None

    def installed(self) -> bool:
        return any(layout.is_ours(chain) for family in FAMILIES for chain in self.current(family).policies)

    def remove(self) -> int:
        changes = 0
        for family in FAMILIES:
            ops = plan(self.current(family), None)
            if ops:
                self.writer.apply(family, ops)
            changes += len(ops)
        return changes

    def show(self) -> str:
        """Our chains and the jumps to them, with counters, in iptables-save form."""
        out = []
        for family in FAMILIES:
            text = self.runner.run([Xtables.program(family, "save"), "-c", "-t", FILTER])
            table = parse_iptables_save(text).get(FILTER, SavedTable(FILTER))
            out.append(f"# {Xtables.program(family)} ({self.xtables.variant})")
            for rule in table.rules:
                if layout.is_ours(rule.chain) or _targets_ours(rule.spec):
                    out.append(f"[{rule.packets}:{rule.bytes}] -A {rule.chain} {rule.spec}")
        return "\n".join(out) + "\n"
