"""Wiring: discovery -> sources -> accounting, one read at a time.

:meth:`Exporter.poll` runs every source inside its own error and timing
wrapper and returns an immutable :class:`Snapshot` for the exposition layer.
Reads are serialised by one lock, and a caller that waited while another read
ran gets that read's snapshot: concurrent scrapes never read the kernel twice
at once.  With a state file, the exporter starts from what was last saved;
background polls (``persist``) always save, and any other read saves when it
changed more than growth: a counter new, gone or reset, a series made or
dropped.  Growth it skips is still in the kernel counters for the next read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Callable, Optional

from . import discovery, privileges
from .accounting import SERIES_PARTS, Accumulator, CounterKey, Observation, SeriesKey, SeriesRow
from .config import Config, QuotaConfig
from .discovery import Container, Inventory
from .discovery.classes import ClassTable, Nesting, nesting
from .netfilter import xtables
from .netfilter.iptables_save import SavedTable
from .rules import Backend
from .rules.ipset import IpsetRules
from .rules.iptables import IptablesRules
from .rules.nftables import NftablesRules
from .runner import CommandError, Runner
from .sources import ContainerReading, IpReading, KernelSource
from .sources.interfaces import InterfacesSource
from .sources.iptables import ADOPTED_CHAINS, IptablesSource, adopted_mark
from .sources.nft_counters import NftCountersSource
from .sources.venetstat import VenetstatSource
from .sources.vznetstat import VznetstatSource
from .state import StateFile, read_boot_id

log = logging.getLogger(__name__)
_UNSEEN: Any = object()  # a counter whose series is not known yet
_class_text = lru_cache(maxsize=256)(str)  # a class id as a label: one string per class, shared by its series

BACKENDS = ("nftables", "ipset", "iptables")  # every netfilter backend, for removal
AUTO_ORDER = BACKENDS  # backend: auto takes the first that works
AUTO_WHY = {
    "nftables": "nft works: set lookups, constant cost per packet",
    "ipset": "no working nft, ipset works: set lookups, constant cost per packet",
    "iptables": "neither nft nor ipset works: one rule per address and class",
}

DISCOVERY_WAIT = 0.5  # s: how long a read waits for a discovery in the background
EXPIRE_EVERY = 60.0  # s; or a tenth of the retention, when that is shorter
IP_SERIES, CONTAINER_SERIES, INTERFACE_SERIES = (
    SERIES_PARTS  # the kinds of series, as the state file has them
)

# The kernel sources of container series.  Where several have the same
# series, one wins for bytes and packets together: nft_counters (Virtuozzo 9,
# complete), else venetstat's bytes with vznetstat's packets (Virtuozzo 7:
# both read the same kernel counters), else vznetstat alone.
KERNEL_SOURCES = ("nft_counters", "venetstat", "vznetstat")
FAMILY_VERSIONS = {"ipv4": 4, "ipv6": 6}


@dataclass(frozen=True)
class SourceStatus:
    name: str
    up: bool
    duration: float


@dataclass(frozen=True)
class ContainerSeries:
    veid: str
    klass: int
    direction: str
    family: str
    bytes: int
    packets: Optional[int]  # None when no source of this node counts packets


@dataclass(frozen=True)
class InterfaceSeries:
    veid: str
    interface: str
    direction: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class Snapshot:
    inventory: Inventory
    classes: ClassTable
    ip_series: Sequence[SeriesRow]  # (("ip", veid, ip, class, direction), packets, bytes), sorted
    container_series: tuple[ContainerSeries, ...]
    interface_series: tuple[InterfaceSeries, ...]
    statuses: tuple[SourceStatus, ...]
    resets: tuple[tuple[str, int], ...]
    quotas: QuotaConfig
    created: tuple[tuple[str, int], ...] = ()  # (veid, when its first series was made), where known


@dataclass
class _Timed:
    """Runs one source's step, logging its failure and timing it."""

    statuses: list[SourceStatus] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], None]) -> bool:
        start = time.monotonic()
        try:
            step()
            ok = True
        except (CommandError, ValueError, OSError, RuntimeError) as err:
            log.error("source %s failed: %s", name, err)
            ok = False
        except Exception:  # a bug must not take the other sources down with it
            log.exception("source %s failed unexpectedly", name)
            ok = False
        self.statuses.append(SourceStatus(name, ok, time.monotonic() - start))
        return ok


class Exporter:
    def __init__(
        self,
        config: Config,
        runner: Runner,
        *,
        procfs: str = "/proc",
        sysfs: str = "/sys",
        keep_rules: bool = False,
        state: Optional[StateFile] = None,
        save_state: bool = False,
        background_discovery: bool = False,
    ) -> None:
        """keep_rules: re-install our rules whenever a read finds them missing or stale.

        state: start from this state file; save_state: write it after every read.
        background_discovery: discover again in a thread, reads taking the last inventory.
        """
        self.config = config
        self.runner = runner
        self.keep_rules = keep_rules and config.netfilter.manage_rules
        self._may_write = keep_rules  # adopted mode: its marker (see _adopted_epoch)
        self.discovery = discovery.build(config, runner, procfs)
        self.kernel_sources = self._kernel_sources(procfs)
        interfaces = InterfacesSource(sysfs)
        self.interfaces = interfaces if self._enabled("interfaces", interfaces.available) else None
        self.accumulator = (state.load() if state else None) or Accumulator()
        absorbed = self.accumulator.boot(read_boot_id(procfs))
        if absorbed:
            log.info("new boot since the state was saved: %d kernel counters start again from zero", absorbed)
        self.state = state if save_state else None
        self._save_failed = ""  # why the last save failed
        self._nothing_said = ""  # why nothing is counted, as last said
        self._exclusive_seen: dict[tuple[str, ...], tuple[int, int]] = {}  # see _exclusive_nft
        self._saved_changes = -1
        self._found: dict[str, Sequence[Container]] = {}
        self._discovered_at: Optional[float] = None
        self._background = background_discovery
        self._discovering: Optional[threading.Thread] = None
        self._discovery_lock = threading.Lock()
        # A finished discovery not taken in yet: (containers by source, statuses by source)
        self._discovered: Optional[tuple[dict[str, Sequence[Container]], dict[str, SourceStatus]]] = None
        self._inventory: Optional[Inventory] = None
        self._expired_at = -float("inf")
        # counter -> its series (None: nobody owns its address), for the owners they were made with
        self._nf_series: dict[CounterKey, Optional[SeriesKey]] = {}
        self._nf_owners: Mapping[str, str] = {}
        self._nf_columns: Optional[tuple[Any, ...]] = None  # the last read, and its columns
        self._backends: dict[str, Backend] = {}
        self._discovery_status: dict[str, SourceStatus] = {}
        self._xtables: Optional[xtables.Xtables] = None
        self._lock = threading.Lock()
        self._generation = 0
        self._snapshot: Optional[Snapshot] = None

    def _enabled(self, name: str, available: Callable[[], bool]) -> bool:
        setting = getattr(self.config.kernel, name)
        if setting is None:
            found = available()
            log.debug("kernel source %s: %s", name, "found" if found else "not found, off")
            return found
        return bool(setting)

    def _kernel_sources(self, procfs: str) -> list[KernelSource]:
        candidates: tuple[KernelSource, ...] = (
            VenetstatSource(procfs),
            NftCountersSource(self.runner),
            VznetstatSource(self.runner),
        )
        enabled = [c for c in candidates if self._enabled(c.name, c.available)]
        names = [c.name for c in enabled]
        if "nft_counters" in names and "vznetstat" in names and self.config.kernel.vznetstat is None:
            # Virtuozzo 9: the nft counters hold everything vznetstat prints, and its vznetstat
            # saturates packet counts and can abort or miss containers on larger nodes.
            log.info("kernel source vznetstat: off, the Virtuozzo 9 nft counters are read instead")
            enabled = [c for c in enabled if c.name != "vznetstat"]
        return enabled

    # -- netfilter backend --------------------------------------------------

    def backend_name(self) -> Optional[str]:
        """The netfilter backend this exporter uses, None when netfilter accounting is off."""
        return self._chosen_backend

    @cached_property
    def _chosen_backend(self) -> Optional[str]:  # chosen at first use: choosing may run commands
        nf = self.config.netfilter
        if nf.backend != "auto":
            return None if nf.backend == "off" else nf.backend
        if not privileges.may_admin_netfilter():  # one line, not every backend's own failure in turn
            log.warning(
                "netfilter accounting is off: every netfilter backend needs CAP_NET_ADMIN, which this "
                "process (uid %d) does not have; grant it (AmbientCapabilities=CAP_NET_ADMIN in the systemd "
                "unit) or run as root",
                os.geteuid(),
            )
            return None
        if not nf.manage_rules:  # adopting the operator's own rules: they are iptables rules
            found = self.runner.which("iptables") is not None
            log.info("netfilter: %s", "adopting iptables rules" if found else "no iptables on PATH, off")
            return "iptables" if found else None
        for name in AUTO_ORDER:
            if self._available(name):
                log.info("netfilter: backend %s (%s)", name, AUTO_WHY[name])
                return name
            log.debug("netfilter: backend %s is not usable here", name)
        log.info("netfilter: neither nft nor iptables works here, netfilter accounting off")
        return None

    def _available(self, name: str) -> bool:
        if name == "iptables":
            return self.runner.which("iptables") is not None
        return self._backend(name).available()

    def _backend(self, name: str) -> Backend:
        # One object per backend for the exporter's life: backends keep what
        # they parsed last, and hand back the same reading for a line that did not change.
        backend = self._backends.get(name)
        if backend is None:
            if name == "iptables":
                backend = IptablesRules(self.runner, self.xtables())
            else:
                backend = (
                    IpsetRules(self.runner, lambda: self.xtables().variant)
                    if name == "ipset"
                    else NftablesRules(self.runner)
                )
            self._backends[name] = backend
        return backend

    def rules(self) -> Backend:
        """The netfilter backend in use (raises CommandError where its tools do not work)."""
        name = self.backend_name()
        if name is None:
            raise ValueError("netfilter accounting is off")
        return self._backend(name)

    def xtables(self) -> xtables.Xtables:
        if self._xtables is None:
            self._xtables = xtables.detect(self.runner)
            log.debug("iptables %s (%s)", self._xtables.version, self._xtables.variant)
        return self._xtables

    def remove_rules(self, names: Sequence[str] = BACKENDS, inventory: Optional[Inventory] = None) -> int:
        """Remove every object of the named backends; returns the number of changes.

        inventory: account what the objects counted first (for the owners it gives, else their last ones).
        """
        changes = 0
        for name in names:
            if self._available(name):
                backend = self._backend(name)
                if backend.installed():
                    if inventory is not None:
                        self._account_netfilter(name, backend.read()[1], inventory, last_owners=True)
                    changes += backend.remove()
        return changes

    def sync_rules(self, inventory: Optional[Inventory] = None, read: bool = True) -> int:
        """Install or update our rules for the inventory; returns the number of changes.

        Objects of any other backend are removed first: one host, one backend.
        What every object holds is accounted before it is changed or removed
        (read: False when the caller has just done so for this backend), and
        saved before the change, where this exporter keeps a state file.
        """
        if inventory is None:
            inventory = self.discover_once()
        backend = self.rules()
        if read:
            self._account_netfilter(backend.name, backend.read()[1], inventory, last_owners=True)
        accounted = self._nf_readings  # this backend's, before another's read takes their place
        others = [name for name in BACKENDS if name != backend.name]
        removed = self.remove_rules(others, inventory)
        if removed:
            log.info("netfilter: removed the objects of the other backends (%d changes)", removed)
        if self.state is not None and self.accumulator.changes != self._saved_changes:
            self.save()
        nf = self.config.netfilter
        result = backend.sync(inventory.ips(), self.config.classes, nf.host_traffic)
        # Counters whose epoch was stamped again keep counting from where they are.
        for r in accounted:
            if r.group in result.restamped:
                self.accumulator.restamped(backend.name, r.counter, result.restamped[r.group])
        for counter, epoch in result.created:
            self.accumulator.started(backend.name, counter, epoch)
        return removed + result.changes

    # -- reading ------------------------------------------------------------

    def discover_once(self) -> Inventory:
        timed = _Timed()
        return self._discover(timed)

    def _discover(self, timed: _Timed) -> Inventory:
        """The inventory for this read: discovered now when due, or the last one.

        With background discovery, only the first discovery is waited for;
        later ones run in a thread of their own, waited for DISCOVERY_WAIT at
        most, and a read takes the last inventory until the thread is done: a
        slow discovery (prlctl asks every guest) never holds up a scrape.
        """
        now = time.monotonic()
        due = self._discovered_at is None or now - self._discovered_at >= self.config.refresh_interval
        if self._background and self._inventory is not None:
            self._collect_discovery()
            if due and self._discovering is None:
                self._discovered_at = now
                self._discovering = threading.Thread(target=self._discover_all, name="discovery", daemon=True)
                self._discovering.start()
                self._discovering.join(DISCOVERY_WAIT)  # a quick discovery serves this read already
                self._collect_discovery()
        elif due or self._inventory is None:
            self._discovered_at = now
            self._discover_all()
            self._collect_discovery()
        timed.statuses += [self._discovery_status[s.name] for s in self.discovery]
        assert self._inventory is not None
        return self._inventory

    def _discover_all(self) -> None:
        """Ask every discovery source (in the background thread, or in the caller's)."""
        timed = _Timed()
        found: dict[str, Sequence[Container]] = {}
        for source in self.discovery:

            def step(source: discovery.DiscoverySource = source) -> None:
                found[source.name] = source.discover()

            timed.run(source.name, step)
        with self._discovery_lock:
            self._discovered = (found, {status.name: status for status in timed.statuses})

    def _collect_discovery(self) -> None:
        """Take in a finished discovery: a failing source keeps its last known containers."""
        with self._discovery_lock:
            done, self._discovered = self._discovered, None
        if done is None:
            return
        self._discovering = None
        found, statuses = done
        self._found.update(found)
        self._discovery_status.update(statuses)
        # Merged again only after a discovery: the same object otherwise, which later steps can tell.
        before = self._inventory.conflicts if self._inventory is not None else {}
        self._inventory = discovery.merge(self._found.get(s.name, ()) for s in self.discovery)
        discovery.report_conflicts(before, self._inventory.conflicts)

    def _say_if_nothing_is_counted(self, snap: Snapshot) -> None:
        """Say once, when it starts, that this node counts nothing, and why."""
        why = ""
        up = {s.name: s.up for s in snap.statuses}
        if not snap.inventory.containers:
            sources = ", ".join(s.name for s in self.discovery) or "none"
            why = (
                f"no containers found (discovery sources: {sources}): nothing is counted; list them in "
                "containers.static, or see why the discovery sources find none"
            )
        elif (
            self.config.netfilter.manage_rules
            and self.backend_name() is not None
            and up.get(str(self.backend_name()))
            and snap.inventory.owners
            and not self._nf_readings
        ):
            why = (
                f"no accounting objects of the {self.backend_name()} backend are installed: netfilter counts "
                "nothing; run `vz-traffic-exporter rules sync`, or start `serve`, which keeps them"
            )
        if why and why != self._nothing_said:
            log.warning("%s", why)
        self._nothing_said = why

    def poll(self, persist: bool = False) -> Snapshot:
        """Read every source; persist: save the state whatever the read found."""
        generation = self._generation
        with self._lock:
            if self._generation != generation and self._snapshot is not None and not persist:
                return self._snapshot  # another caller read while we waited
            self._snapshot = self._poll()
            self._say_if_nothing_is_counted(self._snapshot)
            self._generation += 1
            if persist or self.accumulator.changes != self._saved_changes:
                self.save()
            return self._snapshot

    def _poll(self) -> Snapshot:
        timed = _Timed()
        inventory = self._discover(timed)
        name = self.backend_name()
        if name is not None:
            timed.run(name, lambda: self._read_netfilter(str(name), inventory))
        for source in self.kernel_sources:
            timed.run(source.name, lambda source=source: self._read_kernel(source, inventory))  # type: ignore[misc]
        if self.interfaces is not None:
            timed.run("interfaces", lambda: self._read_interfaces(inventory))
        retention = self.config.state.retention
        now = time.monotonic()
        if now - self._expired_at >= min(EXPIRE_EVERY, retention / 10):
            self.accumulator.expire(retention)
            self._expired_at = now
        interfaces = [
            InterfaceSeries(veid, name, direction, packets, nbytes)
            for (_, veid, name, direction), packets, nbytes in self.accumulator.rows(INTERFACE_SERIES)
        ]
        return Snapshot(
            inventory=inventory,
            classes=self.config.classes,
            ip_series=tuple(self.accumulator.rows(IP_SERIES)),
            container_series=self._container_series(),
            interface_series=tuple(interfaces),
            statuses=tuple(timed.statuses),
            resets=tuple(sorted(self.accumulator.resets.items())),
            quotas=self.config.quotas,
            created=self.accumulator.first_seen(),
        )

    def save(self) -> None:
        """Write the state file (when this exporter keeps one); failures are logged, not raised.

        A failure is logged once, and again only when the reason changes; the
        totals stay in memory and the next save tries again.
        """
        if self.state is None:
            return
        changes = self.accumulator.changes
        try:
            self.state.save(self.accumulator)
        except OSError as err:
            why = str(err)
            if why != self._save_failed:
                log.error("cannot write the state file %s: %s (totals kept in memory)", self.state.path, why)
            self._save_failed = why
            return
        if self._save_failed:
            log.info("state file %s written again", self.state.path)
        self._save_failed = ""
        self._saved_changes = changes

    def _read_kernel(self, source: KernelSource, inventory: Inventory) -> None:
        readings: list[ContainerReading] = source.read()
        self.accumulator.update(
            source.name,
            [
                Observation(
                    r.counter,
                    (
                        CONTAINER_SERIES,
                        source.name,
                        inventory.ctid_of(r.kernel_id),
                        str(r.klass),
                        r.direction,
                        r.family,
                    ),
                    r.packets if r.packets is not None else 0,
                    r.bytes,
                    r.packet_bits,
                    r.epoch,
                )
                for r in readings
            ],
        )

    def _read_interfaces(self, inventory: Inventory) -> None:
        assert self.interfaces is not None
        readings = self.interfaces.read(inventory.interface_owners)
        self.accumulator.update(
            "interfaces",
            [
                Observation(r.counter, (INTERFACE_SERIES, veid, r.interface, r.direction), r.packets, r.bytes)
                for veid, r in readings
            ],
        )

    def _container_series(self) -> tuple[ContainerSeries, ...]:
        """One series per (veid, class, direction, family) from the best source (KERNEL_SOURCES).

        Classes that are not configured are shown only once they counted something.
        """
        found: dict[tuple[str, ...], dict[str, tuple[int, int]]] = {}
        for key, p, b in self.accumulator.rows(CONTAINER_SERIES):
            found.setdefault(key[2:], {})[key[1]] = (p, b)
        configured = {str(i) for i in self.config.classes.ids()}
        exclusive = self._exclusive_nft(found)
        out = []
        for (veid, klass, direction, family), by_source in sorted(found.items()):
            packets: Optional[int]
            if "nft_counters" in by_source:
                if (veid, klass, direction, family) not in exclusive:
                    continue  # its class overlaps another in a way no subtraction undoes
                packets, nbytes = exclusive[(veid, klass, direction, family)]
            elif "venetstat" in by_source:
                nbytes = by_source["venetstat"][1]
                packets = by_source["vznetstat"][0] if "vznetstat" in by_source else None
            else:
                packets, nbytes = by_source["vznetstat"]
            if klass in configured or nbytes or packets:
                out.append(ContainerSeries(veid, int(klass), direction, family, nbytes, packets))
        return tuple(out)

    @cached_property
    def _nesting(self) -> dict[str, Nesting]:
        """How the Virtuozzo 9 nft counters' classes nest, per family; said in the log once."""
        found = {family: nesting(self.config.classes, version) for family, version in FAMILY_VERSIONS.items()}
        for family, nest in found.items():
            for klass, parent in sorted(nest.parent.items()):
                log.info(
                    "nft_counters %s: class %d lies inside class %d: class %d's count is made exclusive "
                    "by taking out class %d's",
                    family, klass, parent, parent, klass,
                )  # fmt: skip
            for klass, zero in sorted(nest.zero_inside.items()):
                log.warning(
                    "nft_counters %s: class-0 networks %s overlap class %d: Virtuozzo 9 counts no class 0, "
                    "so their traffic is in class %d's count",
                    family, ", ".join(map(str, dict.fromkeys(zero))), klass, klass,
                )  # fmt: skip
            for klass, why in sorted(nest.underivable.items()):
                log.error(
                    "nft_counters %s: class %d overlaps other classes, and Virtuozzo 9 counts a packet in "
                    "every class that holds its peer: %s; its counts are not exported",
                    family, klass, why,
                )  # fmt: skip
        return found

    def _exclusive_nft(
        self, found: Mapping[tuple[str, ...], Mapping[str, tuple[int, int]]]
    ) -> dict[tuple[str, ...], tuple[int, int]]:
        """The nft counters' totals made exclusive: a class's minus its nested classes'.

        Virtuozzo 9 counts a packet in every class whose networks hold its
        peer (see :func:`~.discovery.classes.nesting`).  Never decreasing.
        """
        raw: dict[tuple[str, str, str], dict[int, tuple[int, int]]] = {}
        for (veid, name, direction, family), by_source in found.items():
            if "nft_counters" in by_source:
                raw.setdefault((veid, direction, family), {})[int(name)] = by_source["nft_counters"]
        out: dict[tuple[str, ...], tuple[int, int]] = {}
        for (veid, direction, family), classes in raw.items():
            nest = self._nesting[family]
            for klass, (packets, nbytes) in classes.items():
                if klass in nest.underivable:
                    continue
                for child in nest.children(klass):
                    child_packets, child_bytes = classes.get(child, (0, 0))
                    packets, nbytes = packets - child_packets, nbytes - child_bytes
                key = (veid, str(klass), direction, family)
                last = self._exclusive_seen.get(key, (0, 0))
                value = (max(packets, last[0]), max(nbytes, last[1]))
                self._exclusive_seen[key] = out[key] = value
        return out

    @cached_property
    def _adopted(self) -> IptablesSource:
        return IptablesSource(self.runner, adopted=True)

    def _adopted_epoch(self, family: str, table: SavedTable) -> tuple[Optional[int], bool]:
        """The epoch of the operator's rules of a family, from adopted mode's marker, and whether it is new.

        A marker found zeroed means the table was zeroed since the last read
        (``iptables -Z``): what the rules hold now was counted since, even where
        it is above their old values; they get a new epoch, and the marker is
        set again.  The marker is made (by serve, never by dump) where the
        family has rules to adopt and its tools can set counters; the rules
        then keep counting from where they are, in the new marker's epoch.
        """
        mark = adopted_mark(table)
        stamp = None if mark is None else mark[0]
        if not self._may_write or not self.xtables().sets_counters(family):
            return (None if mark is None or mark[1] else stamp), False
        if mark is None and not any(r.chain in ADOPTED_CHAINS for r in table.rules):
            return None, False
        if mark is not None and not mark[1]:
            return stamp, False
        stamp = time.time_ns()
        backend = self._backend("iptables")
        assert isinstance(backend, IptablesRules)
        backend.mark_adopted(family, table, stamp)
        if mark is not None:
            log.info("%s: the filter table was zeroed; the adopted rules count again from zero", family)
        return stamp, mark is None

    def _read_netfilter(self, name: str, inventory: Inventory) -> None:
        nf = self.config.netfilter
        if not nf.manage_rules:
            tables = {family: self._adopted.read_table(family) for family in xtables.FAMILIES}
            marks = {family: self._adopted_epoch(family, table) for family, table in tables.items()}
            epochs = {family: epoch for family, (epoch, _) in marks.items()}
            readings = self._adopted.readings(tables, epochs).readings
            made = {family for family, (_, new) in marks.items() if new}
            for r in readings:
                if r.counter[1] in made:  # a marker made just now: the rules go on counting
                    self.accumulator.restamped(name, r.counter, r.epoch)
            self._account_netfilter(name, readings, inventory)
            return
        backend = self.rules()
        current, readings = backend.read()
        # Account what the kernel holds before any change: a counter the sync
        # deletes keeps what it counted up to this read.
        if self.keep_rules and not backend.in_sync(
            current, inventory.ips(), self.config.classes, nf.host_traffic
        ):
            self._account_netfilter(name, readings, inventory, last_owners=True)
            changes = self.sync_rules(inventory, read=False)
            log.info(
                "%s: accounting objects were missing, stale or zeroed; %d changes applied", name, changes
            )
            self._account_netfilter(name, backend.read()[1], inventory)
        else:
            self._account_netfilter(name, readings, inventory)

    def _account_netfilter(
        self, name: str, readings: list[IpReading], inventory: Inventory, last_owners: bool = False
    ) -> None:
        """last_owners: the objects are about to go, so the growth of an address nobody owns now goes to the
        series that last counted it (its container left while it was counting, or while we were down)."""
        owners = inventory.owners
        # Series keys follow the owners: made again when they change, else one per counter, kept.
        if owners is not self._nf_owners and owners != self._nf_owners:
            self._nf_series = {}
            self._nf_owners = owners
            self._nf_columns = None
        last = self._nf_columns
        if last is None or last[0] != readings:  # equal readings (mostly the same objects): the same columns
            last = self._nf_columns = (readings, *self._columns(readings, owners))
        counters, series = last[1], last[2]
        if last_owners and None in series:
            owned = self.accumulator.last_owners(IP_SERIES)
            series = [
                owned.get((r.ip, _class_text(r.klass), r.direction)) if key is None else key
                for r, key in zip(readings, series)
            ]
        self.accumulator.update_columns(name, counters, series, *last[3:])

    @property
    def _nf_readings(self) -> list[IpReading]:
        """The last netfilter read accounted."""
        return self._nf_columns[0] if self._nf_columns is not None else []

    def _columns(self, readings: list[IpReading], owners: Mapping[str, str]) -> tuple[list[Any], ...]:
        """The columns of a read for the accounting: counters, their series, packets, bytes, epochs."""
        made = self._nf_series
        counters = [r.counter for r in readings]
        series = []
        for r in readings:
            key = made.get(r.counter, _UNSEEN)
            if key is _UNSEEN:
                veid = owners.get(r.ip)
                # An address nobody owns now is still tracked, so that a later owner
                # gets only what it counts from then on.
                key = made[r.counter] = (
                    None if veid is None else (IP_SERIES, veid, r.ip, _class_text(r.klass), r.direction)
                )
            series.append(key)
        if len(made) > 2 * len(readings) + 1024:  # counters gone for good: forget their keys
            self._nf_series = {c: made[c] for c in counters if c in made}
        return (
            counters,
            series,
            [r.packets for r in readings],
            [r.bytes for r in readings],
            [r.epoch for r in readings],
        )
