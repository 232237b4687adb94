"""Wiring: discovery -> sources -> accounting, one read at a time.

:meth:`Exporter.poll` runs every source inside its own error and timing
wrapper and returns an immutable :class:`Snapshot` for the exposition layer.
Reads are serialised by one lock, and a caller that waited while another read
ran gets that read's snapshot: concurrent scrapes never read the kernel twice
at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import discovery
from .accounting import Accumulator, Observation, SeriesKey
from .config import KERNEL_SOURCES, Config
from .discovery import Container, Inventory
from .discovery.classes import ClassTable
from .netfilter import xtables
from .rules.iptables import IptablesRules
from .runner import CommandError, Runner
from .sources.iptables import IptablesSource

log = logging.getLogger(__name__)

IP_SERIES = "ip"


@dataclass(frozen=True)
class SourceStatus:
    name: str
    up: bool
    duration: float


@dataclass(frozen=True)
class IpSeries:
    veid: str
    ip: str
    klass: int
    direction: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class Snapshot:
    inventory: Inventory
    classes: ClassTable
    ip_series: tuple[IpSeries, ...]
    statuses: tuple[SourceStatus, ...]
    resets: tuple[tuple[str, int], ...]


class SourceFailed(Exception):
    """A source that is configured but cannot work here (already explained)."""


@dataclass
class _Timed:
    """Runs one source's step, logging its failure and timing it."""

    statuses: list[SourceStatus] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], None]) -> bool:
        start = time.monotonic()
        try:
            step()
            ok = True
        except SourceFailed as err:
            log.error("source %s: %s", name, err)
            ok = False
        except (CommandError, ValueError, OSError, RuntimeError) as err:
            log.error("source %s failed: %s", name, err)
            ok = False
        except Exception:  # a bug must not take the other sources down with it
            log.exception("source %s failed unexpectedly", name)
            ok = False
        self.statuses.append(SourceStatus(name, ok, time.monotonic() - start))
        return ok


class Exporter:
    def __init__(self, config: Config, runner: Runner, *, keep_rules: bool = False) -> None:
        """keep_rules: re-install our rules whenever a read finds them missing or stale."""
        self.config = config
        self.runner = runner
        self.keep_rules = keep_rules and config.netfilter.manage_rules
        self.discovery = discovery.build(config)
        self.accumulator = Accumulator()
        self._found: dict[str, Sequence[Container]] = {}
        self._ip_series: dict[SeriesKey, None] = {}
        self._xtables: Optional[xtables.Xtables] = None
        self._lock = threading.Lock()
        self._generation = 0
        self._snapshot: Optional[Snapshot] = None

    # -- netfilter backend --------------------------------------------------

    def backend_name(self) -> Optional[str]:
        backend = self.config.netfilter.backend
        if backend == "off":
            return None
        if backend == "auto" and self.runner.which("iptables") is None:
            log.debug("netfilter: no iptables on PATH, netfilter accounting off")
            return None
        return "iptables"

    def rules(self) -> IptablesRules:
        """The rule backend (raises CommandError if iptables is unusable)."""
        if self._xtables is None:
            self._xtables = xtables.detect(self.runner)
            log.debug("iptables %s (%s)", self._xtables.version, self._xtables.variant)
        return IptablesRules(self.runner, self._xtables)

    def sync_rules(self, inventory: Optional[Inventory] = None) -> int:
        """Install or update our rules for the inventory; returns the number of changes."""
        if inventory is None:
            inventory = self.discover_once()
        nf = self.config.netfilter
        result = self.rules().sync(inventory.ips(), self.config.classes, nf.host_traffic)
        for direction, klass, ip in result.created:
            self.accumulator.started("iptables", ("managed", direction, klass, ip))
        return result.changes

    # -- reading ------------------------------------------------------------

    def discover_once(self) -> Inventory:
        timed = _Timed()
        return self._discover(timed)

    def _discover(self, timed: _Timed) -> Inventory:
        for source in self.discovery:

            def step(source: discovery.DiscoverySource = source) -> None:
                self._found[source.name] = source.discover()

            # A failing source keeps its last known containers.
            timed.run(source.name, step)
        return discovery.merge(self._found.get(s.name, ()) for s in self.discovery)

    def poll(self) -> Snapshot:
        generation = self._generation
        with self._lock:
            if self._generation != generation and self._snapshot is not None:
                return self._snapshot  # another caller read while we waited
            self._snapshot = self._poll()
            self._generation += 1
            return self._snapshot

    def _poll(self) -> Snapshot:
        timed = _Timed()
        inventory = self._discover(timed)
        backend = self.backend_name()
        if backend == "iptables":
            timed.run("iptables", lambda: self._read_iptables(inventory))
        elif self.config.netfilter.backend == "iptables":
            timed.run("iptables", _missing("iptables is not installed (not on PATH)"))
        for name in KERNEL_SOURCES:
            if getattr(self.config.kernel, name) is True:
                timed.run(name, _missing("this source is not supported by this version"))
        series = []
        for key in self._ip_series:
            packets, nbytes = self.accumulator.total(key)
            _, veid, ip, klass, direction = key
            series.append(IpSeries(veid, ip, int(klass), direction, packets, nbytes))
        return Snapshot(
            inventory=inventory,
            classes=self.config.classes,
            ip_series=tuple(series),
            statuses=tuple(timed.statuses),
            resets=tuple(sorted(self.accumulator.resets.items())),
        )

    def _read_iptables(self, inventory: Inventory) -> None:
        nf = self.config.netfilter
        rules = self.rules()
        source = IptablesSource(self.runner, adopted=not nf.manage_rules)
        read = source.read()
        if self.keep_rules and not rules.in_sync(
            read.tables, inventory.ips(), self.config.classes, nf.host_traffic
        ):
            changes = self.sync_rules(inventory)
            log.info("iptables: accounting rules were missing or stale; %d changes applied", changes)
            read = source.read()
        observations = []
        keys: dict[SeriesKey, None] = {}
        for r in read.readings:
            veid = inventory.owners.get(r.ip)
            key: Optional[SeriesKey] = None
            if veid is not None:
                key = (IP_SERIES, veid, r.ip, str(r.klass), r.direction)
                keys[key] = None
            observations.append(Observation(r.counter, key, r.packets, r.bytes))
        self.accumulator.update("iptables", observations)
        self._ip_series = keys


def _missing(why: str) -> Callable[[], None]:
    def step() -> None:
        raise SourceFailed(why)

    return step
