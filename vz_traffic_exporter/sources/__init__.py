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

COUNTER_LIMIT = 1 << 64  # kernel counters are unsigned 64-bit


def counter_value(value: object, where: str) -> int:
    """A raw counter as the kernel or a tool gives it: a whole number in [0, 2**64), else ValueError.

    A value outside that range cannot come from the kernel: the read is refused, not accounted.
    """
    if isinstance(value, str):
        number = int(value) if value.isdigit() and len(value) <= 20 else -1
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = -1
    if not 0 <= number < COUNTER_LIMIT:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise ValueError(f"{where}: {shown} is not a counter value (a whole number below 2^64)")
    return number


class Unique:
    """Refuses an identity seen twice in one read: a duplicate would count as a reset at every read."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._seen: dict[object, str] = {}

    def add(self, identity: object, where: str) -> None:
        first = self._seen.setdefault(identity, where)
        if first is not where:
            raise ValueError(f"{where}: {self.what} {identity} appears twice in one read (first at {first})")


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
    epoch: int | None = None  # the counter's incarnation, where the source can tell


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
