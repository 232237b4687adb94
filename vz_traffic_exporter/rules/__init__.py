"""Netfilter backends: the only code that changes the firewall.

Each backend (``nftables``, ``ipset``, ``iptables``) keeps its accounting
objects as data, diffs them against what the kernel holds, and applies the
difference in one transaction.  What the kernel holds is read by the
backend's reader in :mod:`..netfilter` (``backend.reader``), which also reads
the counters back as :class:`~..model.IpReading`: readers there, writers here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from ..classes import ClassTable
from ..model import CounterKey, IpReading


@dataclass(frozen=True)
class SyncResult:
    changes: int
    # Counters the sync made: they start from zero, in the epoch given (None: read it later).
    created: tuple[tuple[CounterKey, Optional[int]], ...] = ()
    # Epoch groups stamped again without touching their counters: group -> new epoch.
    restamped: dict[str, int] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def available(self) -> bool:
        """Whether this backend can work here (for ``backend: auto``)."""
        ...

    def read(self) -> tuple[Any, list[IpReading]]:
        """What the kernel holds now, as the backend's own data, and its counters."""
        ...

    def in_sync(self, current: Any, ips: Sequence[str], classes: ClassTable, host_traffic: bool) -> bool: ...

    def sync(self, ips: Iterable[str], classes: ClassTable, host_traffic: bool) -> SyncResult: ...

    def installed(self) -> bool:
        """Whether any object of this backend is in the kernel."""
        ...

    def remove(self) -> int: ...

    def show(self) -> str: ...
