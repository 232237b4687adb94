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
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from ..classes import ClassTable
from ..model import CounterKey, IpReading
from ..netfilter import layout
from ..netfilter.iptables import IptablesReader, epoch_group
from ..netfilter.iptables_save import SavedTable, parse_iptables_save
from ..netfilter.xtables import FAMILIES, LEGACY, NFT, Xtables
from ..runner import Runner, output_of
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
    """The family of an address as the inventory writes it (only IPv6 addresses hold a colon)."""
    return "ipv6" if ":" in ip else "ipv4"


def desired(family: str, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> Ruleset:
    version = 4 if family == "ipv4" else 6
    packed = functools.partial(socket.inet_pton, socket.AF_INET if version == 4 else socket.AF_INET6)
    mine = sorted((ip for ip in ips if _family_of(ip) == family), key=packed)  # in address order
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
    new_table: bool = False,
) -> list[Op]:
    """Operations that turn current into want (want None: remove everything of ours).

    Ours are the chains named prefix* and the jumps to them.  New epoch rules
    get the stamp (default: the time in ns).  With markers, current must carry
    counters: an epoch rule whose marker reads zero gets it again.  new_table:
    the table does not exist yet, and the changes make it: an empty chain
    (:func:`table_marker`) says so, for as long as we keep objects there.
    """
    wanted = want.chain_map() if want else {}
    made = list(wanted) + ([layout.EPOCH_CHAIN] if want and want.epochs else [])
    marker = table_marker(prefix)
    if want and (new_table or marker in current.policies):
        made.append(marker)
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


def table_marker(prefix: str) -> str:
    """The empty chain that says a backend made the table it lives in (nf_tables)."""
    return f"{prefix}MADE-TABLE"


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


# --- the table ---------------------------------------------------------------


NFT_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}


@dataclass
class FilterTables:
    """Leaves the host's list of tables as it was (iptables-nft).

    iptables-nft makes the nf_tables table ``ip filter`` (``ip6 filter``) on
    first use and never deletes it.  When our changes make the table, an
    empty chain of ours marks it (:func:`plan`'s ``new_table``); removing our
    objects then also removes the table, if nothing but empty built-in chains
    with an accept policy is left in it.  A table that was there before is
    never ours.  With legacy iptables the kernel's filter table cannot be
    removed from user space: it stays, and costs nothing (no connection
    tracking).  Without the nft command, nothing can be asked or removed,
    and the table stays.
    """

    runner: Runner
    variant: Callable[[], str]  # the host's iptables: LEGACY or NFT

    def absent(self, family: str) -> bool:
        """Whether the filter table does not exist yet, so that writing to it makes it."""
        if self.variant() != NFT:
            return False
        tables = output_of(self.runner, ("nft", "list", "tables", NFT_FAMILY[family]))
        if tables is None:
            log.debug("%s: no nft to ask whether the filter table exists", family)
            return False
        return f"table {NFT_FAMILY[family]} {FILTER}" not in (line.strip() for line in tables.splitlines())

    def drop_if_empty(self, family: str) -> bool:
        """Delete the filter table we made, now that we removed our objects, if it holds nothing else."""
        nft_family = NFT_FAMILY[family]
        text = output_of(self.runner, ("nft", "-j", "list", "table", nft_family, FILTER))
        if text is None:
            return False
        if not _empty_table(text):
            log.info("%s: the filter table we made now holds other rules; left in place", family)
            return False
        self.runner.run(("nft", "delete", "table", nft_family, FILTER))
        log.info("%s: removed the filter table our rules had made", family)
        return True


def _empty_table(text: str) -> bool:
    """Whether ``nft -j list table`` shows nothing but empty chains, base chains accepting."""
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError):
        return False
    for item in items:
        if not isinstance(item, dict):
            return False
        if "metainfo" in item or "table" in item:
            continue
        chain = item.get("chain")
        if not isinstance(chain, dict) or chain.get("policy", "accept") != "accept":
            return False
    return True


def remove_family(
    current: SavedTable, family: str, writer: Writer, tables: FilterTables, prefix: str = layout.PREFIX
) -> int:
    """Remove every object of ours from one family's filter table, and the table if we made it."""
    ops = plan(current, None, prefix=prefix)
    if ops:
        writer.apply(family, ops)
    if table_marker(prefix) in current.policies and tables.drop_if_empty(family):
        return len(ops) + 1
    return len(ops)


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
            except iptc.IPTCError as err:
                raise RuntimeError(f"{Xtables.program(family)} filter table: {err}") from None
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
                # libiptc finds the rule by its contents: our rules are never read back as iptc
                # objects, whose targets would look for chains in every table (see _filter_rule).
                try:
                    chain.delete_rule(_to_iptc(iptc, family, op.spec))
                except iptc.IPTCError:
                    raise RuntimeError(f"rule to delete not found: -A {op.chain} {op.spec}") from None


class _xtables_lock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    warned = False  # said once per process

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as err:
            if not _xtables_lock.warned:
                log.warning(
                    "writing without the xtables lock: cannot open %s (%s); `iptables -w` users do not "
                    "wait for us, and a commit that meets their change fails and is tried at the next read",
                    self.path,
                    err.strerror,
                )
                _xtables_lock.warned = True
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock
            self.fd = -1


@functools.cache
def _filter_rule(iptc: Any, family: str) -> Any:
    """python-iptables' rule class of a family, told that our rules live in the filter table.

    Its own rules look for a jump target's chain in every table, and opening
    a table makes the kernel instantiate it: on a legacy node that would load
    nat, mangle, raw and security in both families, and a nat table puts
    connection tracking on every packet.  Ours only ever jump within filter.
    """
    base, table = (iptc.Rule, iptc.Table) if family == "ipv4" else (iptc.Rule6, iptc.Table6)
    filter_only = property(lambda self: [table(table.FILTER)])
    return type(f"Filter{base.__name__}", (base,), {"tables": filter_only})


def _to_iptc(iptc: Any, family: str, spec: str) -> Any:
    """An iptc rule for one of our own specs (-s/-d, a comment, then -j/-g)."""
    rule = _filter_rule(iptc, family)()
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


# --- the backend ----------------------------------------------------------


class IptablesRules:
    name = "iptables"

    def __init__(self, runner: Runner, xtables: Xtables, writer: Optional[Writer] = None) -> None:
        self.runner = runner
        self.xtables = xtables
        if writer is None:
            writer = LibiptcWriter() if xtables.variant == LEGACY else RestoreWriter(runner)
        self.writer = writer
        self.reader = IptablesReader(runner, adopted=False, xtables=xtables)
        self._tables = FilterTables(runner, lambda: xtables.variant)
        self._in_sync: Optional[tuple[object, list[Ruleset], bool]] = None

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
            markers = self.xtables.sets_counters(family)
            ops = plan(current, want, markers=markers)
            if ops and self._tables.absent(family):
                ops = plan(current, want, markers=markers, new_table=True)
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
        """Whether the given live tables already hold exactly the wanted rules.

        Known without a plan when the tables have the shape they had at the last call, with the same
        epoch rules and counters, and the same rules are wanted.
        """
        ips = tuple(ips)
        current = [tables.get(family, SavedTable(FILTER)) for family in FAMILIES]
        wanted = [_wanted(family, ips, classes, host_traffic) for family in FAMILIES]
        key = (
            [t.shape for t in current],
            [t.chain_rules(layout.EPOCH_CHAIN) for t in current],
            [self.xtables.sets_counters(family) for family in FAMILIES],
        )
        if self._in_sync is not None and self._in_sync[0] == key and self._in_sync[1] == wanted:
            return self._in_sync[2]
        answer = all(
            not plan(table, want, markers=key[2][i]) for i, (table, want) in enumerate(zip(current, wanted))
        )
        self._in_sync = (key, wanted, answer)
        return answer

    def read(self) -> tuple[dict[str, SavedTable], list[IpReading]]:
        read = self.reader.read()
        return read.tables, read.readings

    def available(self) -> bool:
        return self.runner.which("iptables") is not None

    def installed(self) -> bool:
        return any(layout.is_ours(chain) for family in FAMILIES for chain in self.current(family).policies)

    def remove(self) -> int:
        return sum(
            remove_family(self.current(family), family, self.writer, self._tables) for family in FAMILIES
        )

    def mark_adopted(self, family: str, table: SavedTable, stamp: int) -> None:
        """Set adopted mode's marker (:data:`layout.ADOPTED_MARK_CHAIN`) with a new stamp."""
        ops = [] if layout.ADOPTED_MARK_CHAIN in table.policies else [Op("new", layout.ADOPTED_MARK_CHAIN)]
        ops += [Op("delete", r.chain, r.spec) for r in table.chain_rules(layout.ADOPTED_MARK_CHAIN)]
        ops.append(Op("append", layout.ADOPTED_MARK_CHAIN, layout.adopted_mark_spec(stamp), MARKER))
        self.writer.apply(family, ops)

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
