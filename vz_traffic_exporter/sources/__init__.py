"""Sources: raw counters read from the kernel, one module per source.

A source's parser is pure (text in, frozen records out); its reader does the
I/O through the injectable runner or under the configured /proc and /sys
roots.  Readings carry a stable ``counter`` identity so the accounting layer
can tell one kernel counter from another across reads.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..accounting import CounterKey


@functools.lru_cache(maxsize=1 << 17)
def canonical_ip(text: str) -> str:
    """An address as the labels show it (IPv6 compressed, lower case); ValueError if it is none.

    Cached: every read of a large node sees the same tens of thousands of addresses again.
    """
    return str(ipaddress.ip_address(text))


class IpReading(NamedTuple):
    """One kernel counter of one container address, direction and class (a tuple: 10,000s per read)."""

    counter: CounterKey  # identity of the raw counter (a rule), stable across reads
    ip: str
    klass: int
    direction: str  # "in" = received by the container, "out" = sent by it
    packets: int
    bytes: int
    epoch: int | None = None  # the incarnation of the counter, when the backend can tell
    group: str = ""  # counters that share one epoch (a chain, a table)


@dataclass(frozen=True)
class ContainerReading:
    """One kernel per-class counter of a container (or of the host, id "0")."""

    counter: CounterKey
    kernel_id: str  # as the kernel or tool prints it: a VEID number or a CTID
    klass: int
    direction: str
    family: str  # "ipv4" or "ipv6"
    bytes: int
    packets: int | None = None  # None: this source counts bytes only
    packet_bits: int | None = None  # the packet counter wraps at 2**packet_bits


@dataclass(frozen=True)
class InterfaceReading:
    """Counters of one host-side interface, directions from the container's view."""

    counter: CounterKey  # (name, ifindex): a re-created device is a new counter
    interface: str
    direction: str
    packets: int
    bytes: int


class KernelSource(Protocol):
    """A source of per-class container counters (venetstat, vznetstat, nft_counters)."""

    name: str

    def available(self) -> bool:
        """Whether what it reads exists on this host (for ``auto``)."""
        ...

    def read(self) -> list[ContainerReading]: ...
