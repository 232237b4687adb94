"""Sources: raw counters read from the kernel, one module per source.

A source's parser is pure (text in, frozen records out); its reader does the
I/O through the injectable runner or under the configured /proc and /sys
roots.  Readings carry a stable ``counter`` identity so the accounting layer
can tell one kernel counter from another across reads.
"""

from __future__ import annotations

from typing import Protocol

from ..model import ContainerReading


class KernelSource(Protocol):
    """A source of per-class container counters (venetstat, vznetstat, nft_counters)."""

    name: str

    def available(self) -> bool:
        """Whether what it reads exists on this host (for ``auto``)."""
        ...

    def read(self) -> list[ContainerReading]: ...
