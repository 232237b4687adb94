"""Sources: raw counters read from the kernel, one module per source.

A source's parser is pure (text in, frozen records out); its reader does the
I/O through the injectable runner or under the configured /proc and /sys
roots.  Readings carry a stable ``counter`` identity so the accounting layer
can tell one kernel counter from another across reads.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class IpReading:
    """One kernel counter of one container address, direction and class."""

    counter: Hashable  # identity of the raw counter (a rule), stable across reads
    ip: str
    klass: int
    direction: str  # "in" = received by the container, "out" = sent by it
    packets: int
    bytes: int
