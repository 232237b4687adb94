"""The inventory room: the containers and who owns which address, discovered again when due.

With background discovery, only the first discovery is waited for; later
ones run in a thread of their own, waited for DISCOVERY_WAIT at most, and a
read takes the last inventory until the thread is done: a slow discovery
(prlctl asks every guest) never holds up a scrape.  A failing source keeps
its last known containers.  Each merged inventory has a new ``generation``:
the change token of everything made from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Optional

from .. import discovery
from ..config import Config
from ..model import Container, Inventory, SourceStatus
from ..runner import Runner
from . import Steps

DISCOVERY_WAIT = 0.5  # s: how long a read waits for a discovery in the background


class InventoryRoom:
    def __init__(self, config: Config, runner: Runner, procfs: str, background: bool = False) -> None:
        self.config = config
        self.sources = discovery.build(config, runner, procfs)
        self._background = background
        self._found: dict[str, Sequence[Container]] = {}  # per source, what it found last
        self._status: dict[str, SourceStatus] = {}
        self._discovered_at: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        # A finished discovery not taken in yet: (containers by source, statuses by source)
        self._done: Optional[tuple[dict[str, Sequence[Container]], dict[str, SourceStatus]]] = None
        self._inventory: Optional[Inventory] = None
        self._generation = 0

    def current(self, steps: Steps) -> Inventory:
        """The inventory for this read: discovered now when due, or the last one; adds the statuses."""
        now = time.monotonic()
        due = self._discovered_at is None or now - self._discovered_at >= self.config.refresh_interval
        if self._background and self._inventory is not None:
            self._collect()
            if due and self._thread is None:
                self._discovered_at = now
                self._thread = threading.Thread(target=self._discover_all, name="discovery", daemon=True)
                self._thread.start()
                self._thread.join(DISCOVERY_WAIT)  # a quick discovery serves this read already
                self._collect()
        elif due or self._inventory is None:
            self._discovered_at = now
            self._discover_all()
            self._collect()
        steps.statuses += [self._status[s.name] for s in self.sources]
        assert self._inventory is not None
        return self._inventory

    def why_nothing(self, inventory: Inventory) -> str:
        """Why nothing is counted, where the inventory is the reason ('' if it is not)."""
        if inventory.containers:
            return ""
        sources = ", ".join(s.name for s in self.sources) or "none"
        return (
            f"no containers found (discovery sources: {sources}): nothing is counted; list them in "
            "containers.static, or see why the discovery sources find none"
        )

    def _discover_all(self) -> None:
        """Ask every discovery source (in the background thread, or in the caller's)."""
        steps = Steps()
        found: dict[str, Sequence[Container]] = {}
        for source in self.sources:

            def step(source: discovery.DiscoverySource = source) -> None:
                found[source.name] = source.discover()

            steps.run(source.name, step)
        with self._lock:
            self._done = (found, {status.name: status for status in steps.statuses})

    def _collect(self) -> None:
        """Take in a finished discovery, merged into a new inventory of a new generation."""
        with self._lock:
            done, self._done = self._done, None
        if done is None:
            return
        self._thread = None
        found, statuses = done
        self._found.update(found)
        self._status.update(statuses)
        merged = discovery.merge((self._found.get(s.name, ()) for s in self.sources), self._generation + 1)
        last = self._inventory
        if last is not None and (merged.containers, merged.conflicts) == (last.containers, last.conflicts):
            return  # found the same: the same inventory, of the same generation
        self._generation += 1
        self._inventory = merged
        discovery.report_conflicts(last.conflicts if last is not None else {}, merged.conflicts)
