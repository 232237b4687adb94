"""The netfilter room: which backend, its objects kept in sync, its counters read, and their owners.

Our objects (``netfilter.manage_rules``) are one backend's: chosen once
(``backend: auto`` takes the first that works), installed and kept by a
sync, read at every poll.  What every object holds is accounted before it is
changed or removed.  Adopted mode reads the operator's own iptables rules,
their epochs kept by a marker rule of ours (see :meth:`_adopted_epoch`).

Which series a counter feeds follows the inventory: the columns of a read
(counters, series, values) are made again only when the inventory's
generation or the read's token moved.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import cached_property, lru_cache
from typing import Any, Optional

from .. import privileges
from ..accounting import Accumulator
from ..config import Config
from ..model import IP_SERIES, CounterKey, Inventory, IpKey, IpReading, SeriesKey
from ..names import BACKENDS
from ..netfilter import xtables
from ..netfilter.iptables import ADOPTED_CHAINS, IptablesReader, adopted_mark
from ..netfilter.iptables_save import SavedTable
from ..rules import Backend
from ..rules.ipset import IpsetRules
from ..rules.iptables import IptablesRules
from ..rules.nftables import NftablesRules
from ..runner import Runner

log = logging.getLogger(__name__)
_UNSEEN: Any = object()  # a counter whose series is not known yet
_class_text = lru_cache(maxsize=256)(str)  # a class id as a label: one string per class, shared by its series
AUTO_WHY = {
    "nftables": "nft works: set lookups, constant cost per packet",
    "ipset": "no working nft, ipset works: set lookups, constant cost per packet",
    "iptables": "neither nft nor ipset works: one rule per address and class",
}


class NetfilterRoom:
    def __init__(self, config: Config, runner: Runner, accumulator: Accumulator, may_write: bool) -> None:
        """may_write: keep our objects in sync at every read (serve); in adopted mode, keep its marker."""
        self.config = config
        self.runner = runner
        self.accumulator = accumulator
        self.keep_rules = may_write and config.netfilter.manage_rules
        self._may_write = may_write
        self._backends: dict[str, Backend] = {}
        self._xtables: Optional[xtables.Xtables] = None
        # counter -> its series (None: nobody owns its address), for the inventory they were made with
        self._series: dict[CounterKey, Optional[SeriesKey]] = {}
        self._generation: Optional[int] = None  # that inventory's
        self._columns: Optional[tuple[Any, ...]] = (
            None  # the last read (its readings' token), and its columns
        )
        self.readings: list[IpReading] = []  # the last read accounted

    # -- the backend ------------------------------------------------------------

    def backend_name(self) -> Optional[str]:
        """The netfilter backend this exporter uses, None when netfilter accounting is off."""
        return self._chosen

    @cached_property
    def _chosen(self) -> Optional[str]:  # chosen at first use: choosing may run commands
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
        for name in BACKENDS:
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
        # One object per backend for the exporter's life: backends keep what they parsed last.
        backend = self._backends.get(name)
        if backend is None:
            if name == "iptables":
                backend = IptablesRules(self.runner, self.xtables())
            elif name == "ipset":
                backend = IpsetRules(self.runner, lambda: self.xtables().variant)
            else:
                backend = NftablesRules(self.runner)
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

    # -- changing the kernel's objects -------------------------------------------------

    def remove(self, names: Sequence[str] = BACKENDS, inventory: Optional[Inventory] = None) -> int:
        """Remove every object of the named backends; returns the number of changes.

        inventory: account what the objects counted first (for the owners it gives, else their last ones).
        """
        changes = 0
        for name in names:
            if self._available(name):
                backend = self._backend(name)
                if backend.installed():
                    if inventory is not None:
                        self._account(name, backend.read()[1], inventory, last_owners=True)
                    changes += backend.remove()
        return changes

    def clear_for_sync(self, inventory: Inventory, read: bool = True) -> tuple[int, list[IpReading]]:
        """Account this backend's objects (read: unless just done) and remove the other backends' (one
        host, one backend); returns the changes and this backend's readings, for :meth:`sync`."""
        backend = self.rules()
        if read:
            self._account(backend.name, backend.read()[1], inventory, last_owners=True)
        accounted = self.readings  # this backend's, before another's read takes their place
        removed = self.remove([name for name in BACKENDS if name != backend.name], inventory)
        if removed:
            log.info("netfilter: removed the objects of the other backends (%d changes)", removed)
        return removed, accounted

    def sync(self, inventory: Inventory, accounted: list[IpReading]) -> int:
        """Install or update our objects for the inventory; returns the number of changes."""
        backend = self.rules()
        nf = self.config.netfilter
        result = backend.sync(inventory.ips(), self.config.classes, nf.host_traffic)
        # Counters whose epoch was stamped again keep counting from where they are.
        for r in accounted:
            if r.group in result.restamped:
                self.accumulator.restamped(backend.name, r.counter, result.restamped[r.group])
        for counter, epoch in result.created:
            self.accumulator.started(backend.name, counter, epoch)
        return result.changes

    # -- reading ------------------------------------------------------------------

    def read(self, inventory: Inventory) -> bool:
        """Account one read; returns False when our objects need a sync (keep_rules), accounted already."""
        name = str(self.backend_name())
        if not self.config.netfilter.manage_rules:
            self._read_adopted(name, inventory)
            return True
        backend = self.rules()
        current, readings = backend.read()
        nf = self.config.netfilter
        if self.keep_rules and not backend.in_sync(
            current, inventory.ips(), self.config.classes, nf.host_traffic
        ):
            # What the kernel holds before any change: a counter the sync deletes keeps what it counted.
            self._account(name, readings, inventory, last_owners=True)
            return False
        self._account(name, readings, inventory)
        return True

    def read_again(self, inventory: Inventory) -> None:
        """Account a read just after a sync."""
        self._account(str(self.backend_name()), self.rules().read()[1], inventory)

    def why_nothing(self, inventory: Inventory, up: bool) -> str:
        """Why nothing is counted, where our objects are the reason ('' if they are not)."""
        name = self.backend_name()
        if not self.config.netfilter.manage_rules or name is None or not up or not inventory.owners:
            return ""
        if self.readings:
            return ""
        return (
            f"no accounting objects of the {name} backend are installed: netfilter counts "
            "nothing; run `vz-traffic-exporter rules sync`, or start `serve`, which keeps them"
        )

    @cached_property
    def _adopted(self) -> IptablesReader:
        return IptablesReader(self.runner, adopted=True)

    def _read_adopted(self, name: str, inventory: Inventory) -> None:
        tables = {family: self._adopted.read_table(family) for family in xtables.FAMILIES}
        marks = {family: self._adopted_epoch(family, table) for family, table in tables.items()}
        epochs = {family: epoch for family, (epoch, _) in marks.items()}
        readings = self._adopted.readings(tables, epochs).readings
        made = {family for family, (_, new) in marks.items() if new}
        for r in readings:
            if r.counter[1] in made:  # a marker made just now: the rules go on counting
                self.accumulator.restamped(name, r.counter, r.epoch)
        self._account(name, readings, inventory)

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

    # -- which series each counter feeds --------------------------------------------

    def _account(
        self, name: str, readings: list[IpReading], inventory: Inventory, last_owners: bool = False
    ) -> None:
        """last_owners: the objects are about to go, so the growth of an address nobody owns now goes to the
        series that last counted it (its container left while it was counting, or while we were down)."""
        if inventory.generation != self._generation:  # series keys follow the owners
            self._series = {}
            self._generation = inventory.generation
            self._columns = None
        last = self._columns
        if last is None or last[0] != readings:  # equal readings (mostly the same objects): the same columns
            last = self._columns = (readings, *self._columns_of(readings, inventory))
        self.readings = readings
        counters, series = last[1], last[2]
        if last_owners and None in series:
            owned = self.accumulator.series.last_owners(IP_SERIES)
            series = [
                owned.get((r.ip, _class_text(r.klass), r.direction)) if key is None else key
                for r, key in zip(readings, series)
            ]
        self.accumulator.update_columns(name, counters, series, *last[3:])

    def _columns_of(self, readings: list[IpReading], inventory: Inventory) -> tuple[list[Any], ...]:
        """The columns of a read for the accounting: counters, their series, packets, bytes, epochs."""
        made, owners = self._series, inventory.owners
        counters = [r.counter for r in readings]
        series = []
        for r in readings:
            key = made.get(r.counter, _UNSEEN)
            if key is _UNSEEN:
                veid = owners.get(r.ip)
                # An address nobody owns now is still tracked, so that a later owner
                # gets only what it counts from then on.
                key = made[r.counter] = (
                    None if veid is None else IpKey(IP_SERIES, veid, r.ip, _class_text(r.klass), r.direction)
                )
            series.append(key)
        if len(made) > 2 * len(readings) + 1024:  # counters gone for good: forget their keys
            self._series = {c: made[c] for c in counters if c in made}
        return (
            counters,
            series,
            [r.packets for r in readings],
            [r.bytes for r in readings],
            [r.epoch for r in readings],
        )
