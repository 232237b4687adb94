"""The orchestrator of one read: inventory -> netfilter and kernel sources -> accounting -> a snapshot.

:meth:`Exporter.poll` asks the rooms of :mod:`.wiring` in turn, each source
inside its own error and timing step, and returns an immutable
:class:`~.model.Snapshot` for the exposition layer.  Reads are serialised by
one lock, and a caller that waited while another read ran gets that read's
snapshot: concurrent scrapes never read the kernel twice at once.  With a
state file, the exporter starts from what was last saved; background polls
(``persist``) always save, and any other read saves when it changed more
than growth: a counter new, gone or reset, a series made or dropped.  Growth
it skips is still in the kernel counters for the next read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Optional

from .accounting import Accumulator
from .config import Config
from .model import CONTAINER_SERIES, INTERFACE_SERIES, IP_SERIES, Inventory, Snapshot, Tokens
from .names import BACKENDS
from .rules import Backend
from .runner import Runner
from .state import StateFile, read_boot_id
from .wiring import Steps
from .wiring.inventory import InventoryRoom
from .wiring.kernel import KernelRoom
from .wiring.netfilter import NetfilterRoom

log = logging.getLogger(__name__)
EXPIRE_EVERY = 60.0  # s; or a tenth of the retention, when that is shorter


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
        self.accumulator = (state.load() if state else None) or Accumulator()
        absorbed = self.accumulator.boot(read_boot_id(procfs))
        if absorbed:
            log.info("new boot since the state was saved: %d kernel counters start again from zero", absorbed)
        self.inventory = InventoryRoom(config, runner, procfs, background_discovery)
        self.netfilter = NetfilterRoom(config, runner, self.accumulator, keep_rules)
        self.kernel = KernelRoom(config, runner, self.accumulator, procfs, sysfs)
        self.state = state if save_state else None
        self._save_failed = ""  # why the last save failed
        self._nothing_said = ""  # why nothing is counted, as last said
        self._saved_changes = -1
        self._expired_at = -float("inf")
        self._lock = threading.Lock()
        self._reads = 0
        self._snapshot: Optional[Snapshot] = None

    # -- what the command line asks of the rooms ---------------------------------------

    @property
    def keep_rules(self) -> bool:
        return self.netfilter.keep_rules

    def backend_name(self) -> Optional[str]:
        return self.netfilter.backend_name()

    def rules(self) -> Backend:
        return self.netfilter.rules()

    def discover_once(self) -> Inventory:
        return self.inventory.current(Steps())

    def remove_rules(self, names: Sequence[str] = BACKENDS, inventory: Optional[Inventory] = None) -> int:
        """Remove every object of the named backends (accounted first for the inventory, when given)."""
        return self.netfilter.remove(names, inventory)

    def sync_rules(self, inventory: Optional[Inventory] = None, read: bool = True) -> int:
        """Install or update our rules for the inventory; returns the number of changes.

        Objects of any other backend are removed first: one host, one backend.
        What every object holds is accounted before it is changed or removed
        (read: False when the caller has just done so for this backend), and
        saved before the change, where this exporter keeps a state file.
        """
        inventory = inventory or self.discover_once()
        removed, accounted = self.netfilter.clear_for_sync(inventory, read)
        if self.state is not None and self.accumulator.changes != self._saved_changes:
            self.save()
        return removed + self.netfilter.sync(inventory, accounted)

    # -- reading ------------------------------------------------------------------

    def poll(self, persist: bool = False) -> Snapshot:
        """Read every source; persist: save the state whatever the read found."""
        reads = self._reads
        with self._lock:
            if self._reads != reads and self._snapshot is not None and not persist:
                return self._snapshot  # another caller read while we waited
            self._snapshot = self._read()
            self._say_if_nothing_is_counted(self._snapshot)
            self._reads += 1
            if persist or self.accumulator.changes != self._saved_changes:
                self.save()
            return self._snapshot

    def _read(self) -> Snapshot:
        steps = Steps()
        inventory = self.inventory.current(steps)
        name = self.backend_name()
        if name is not None:
            steps.run(name, lambda: self._read_netfilter(inventory))
        for source, step in self.kernel.steps(inventory):
            steps.run(source, step)
        retention = self.config.state.retention
        now = time.monotonic()
        if now - self._expired_at >= min(EXPIRE_EVERY, retention / 10):
            self.accumulator.expire(retention)
            self._expired_at = now
        acc, table = self.accumulator, self.accumulator.series
        return Snapshot(
            inventory=inventory,
            classes=self.config.classes,
            ip_series=tuple(acc.rows(IP_SERIES)),
            container_series=self.kernel.container_series(),
            interface_series=self.kernel.interface_series(),
            statuses=tuple(steps.statuses),
            resets=tuple(sorted(acc.resets.items())),
            quotas=self.config.quotas,
            created=table.first_seen(),
            tokens=Tokens(
                inventory=inventory.generation,
                ip=table.version(IP_SERIES),
                containers=table.version(CONTAINER_SERIES),
                interfaces=table.version(INTERFACE_SERIES),
                created=table.made,
            ),
            at=time.time(),
        )

    def _read_netfilter(self, inventory: Inventory) -> None:
        if not self.netfilter.read(inventory):  # our objects were missing, stale or zeroed: sync them
            changes = self.sync_rules(inventory, read=False)
            name = self.backend_name()
            log.info(
                "%s: accounting objects were missing, stale or zeroed; %d changes applied", name, changes
            )
            self.netfilter.read_again(inventory)

    def _say_if_nothing_is_counted(self, snap: Snapshot) -> None:
        """Say once, when it starts, that this node counts nothing, and why."""
        up = {s.name: s.up for s in snap.statuses}
        why = self.inventory.why_nothing(snap.inventory) or self.netfilter.why_nothing(
            snap.inventory, bool(up.get(str(self.backend_name())))
        )
        if why and why != self._nothing_said:
            log.warning("%s", why)
        self._nothing_said = why

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
