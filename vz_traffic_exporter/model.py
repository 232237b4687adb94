"""The types that cross layers: readings, counter and series keys, containers, snapshots.

Data flows one way (``docs/architecture.md``): discovery finds containers,
sources and backends read raw counters as *readings*, the accounting turns
them into monotonic totals per *series key*, and exposition writes one
*snapshot* per scrape.  Every module of that flow imports its shared types
from here, never from a module later in the flow.

Change tokens: an :class:`Inventory` carries the ``generation`` of the
discovery that made it, and a :class:`Snapshot` carries :class:`Tokens`, one
number per part that a scrape writes.  A part whose token did not move since
the last scrape is unchanged, and what was made from it can be kept.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

if TYPE_CHECKING:
    from .classes import ClassTable
    from .config import QuotaConfig

# -- keys ---------------------------------------------------------------------

CounterKey = tuple[Union[str, int], ...]  # a raw counter's identity within its source
SeriesKey = tuple[str, ...]  # a series: its kind first, then its labels (one of the key types below)
Epoch = Optional[int]  # a counter's incarnation, where its source can tell
SeriesRow = tuple[SeriesKey, int, int]  # (series, packets, bytes)


class IpKey(NamedTuple):
    """A series of one container address, class and direction (netfilter)."""

    kind: str  # "ip"
    veid: str
    ip: str
    klass: str
    direction: str


class KernelKey(NamedTuple):
    """A series of one kernel source's per-class counter of a container."""

    kind: str  # "container"
    source: str
    veid: str
    klass: str
    direction: str
    family: str


class InterfaceKey(NamedTuple):
    """A series of one host-side interface of a container."""

    kind: str  # "interface"
    veid: str
    interface: str
    direction: str


IP_SERIES, CONTAINER_SERIES, INTERFACE_SERIES = "ip", "container", "interface"
SERIES_KEYS: dict[str, type[tuple[str, ...]]] = {
    IP_SERIES: IpKey,
    CONTAINER_SERIES: KernelKey,
    INTERFACE_SERIES: InterfaceKey,
}
# The kinds of series, with the number of parts of their keys, as the state file has them.
SERIES_PARTS = {kind: len(key._fields) for kind, key in SERIES_KEYS.items()}  # type: ignore[attr-defined]
VEID_PART = {kind: key._fields.index("veid") for kind, key in SERIES_KEYS.items()}  # type: ignore[attr-defined]


def veid_of(series: SeriesKey) -> str:
    """The container of a series key (a named key or the plain tuple a state file gives)."""
    veid: str = series[VEID_PART.get(series[0], 1)]
    return veid


def series_key(parts: Sequence[str]) -> SeriesKey:
    """The named key of a series' parts (ValueError if they are not one)."""
    key = SERIES_KEYS.get(parts[0]) if parts else None
    if key is None or SERIES_PARTS[parts[0]] != len(parts):
        raise ValueError("not a series")
    return key._make(parts)  # type: ignore[attr-defined,no-any-return]


# -- values as the kernel and the tools give them -----------------------------

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


# -- readings -----------------------------------------------------------------


class IpReading(NamedTuple):
    """One kernel counter of one container address, direction and class (a tuple: 10,000s per read)."""

    counter: CounterKey  # identity of the raw counter (a rule), stable across reads
    ip: str
    klass: int
    direction: str  # "in" = received by the container, "out" = sent by it
    packets: int
    bytes: int
    epoch: Optional[int] = None  # the incarnation of the counter, when the backend can tell
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
    packets: Optional[int] = None  # None: this source counts bytes only
    packet_bits: Optional[int] = None  # the packet counter wraps at 2**packet_bits
    epoch: Optional[int] = None  # the counter's incarnation, where the source can tell


@dataclass(frozen=True)
class InterfaceReading:
    """Counters of one host-side interface, directions from the container's view."""

    counter: CounterKey  # (name, ifindex): a re-created device is a new counter
    interface: str
    direction: str
    packets: int
    bytes: int


# -- containers ---------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    veid: str  # the CTID: numeric VEID, CTID string or VM UUID; "0" is the host
    name: str = ""
    ips: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()  # host-side network devices


def kernel_veid(ctid: str) -> Optional[int]:
    """The kernel's numeric VEID of a CTID (libvzctl ctid2veid), None if it has none.

    Numeric CTIDs keep their number; a UUID (36 characters) uses its first 32
    bits with the top bit cleared: fbb30afa-... -> 2075331322.
    """
    if ctid.isdigit():
        return int(ctid)
    if len(ctid) >= 36:
        try:
            return int(ctid[:8], 16) & 0x7FFFFFFF
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Inventory:
    """Containers by veid, the owner of each address, and the addresses several containers claim.

    generation: the discovery that made it; a new inventory has a new one.
    """

    containers: Mapping[str, Container]
    owners: Mapping[str, str]
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    generation: int = 0

    @classmethod
    def empty(cls) -> Inventory:
        return cls(MappingProxyType({}), MappingProxyType({}))

    def ips(self) -> list[str]:
        return list(self.owners)

    @cached_property
    def _ctid_by_kernel_veid(self) -> dict[str, str]:
        by_veid: dict[str, str] = {}
        for ctid in self.containers:
            number = kernel_veid(ctid)
            if number is not None:
                by_veid.setdefault(str(number), ctid)
        return by_veid

    def ctid_of(self, kernel_id: str) -> str:
        """The CTID for an id the kernel prints (a VEID number or a CTID)."""
        if kernel_id in self.containers:
            return kernel_id
        return self._ctid_by_kernel_veid.get(kernel_id, kernel_id)

    @cached_property
    def interface_owners(self) -> dict[str, str]:
        return {name: ct.veid for ct in self.containers.values() for name in ct.interfaces}


# -- what one read gives the exposition -----------------------------------------


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
class Tokens:
    """Change tokens of a snapshot's parts: equal tokens, equal part (None: not known, write it again)."""

    inventory: Optional[int] = None  # the inventory's generation
    ip: Optional[int] = None  # the address series
    containers: Optional[int] = None  # the kernel's container series
    interfaces: Optional[int] = None  # the interface series
    created: Optional[int] = None  # the containers' first-seen times


@dataclass(frozen=True)
class Snapshot:
    inventory: Inventory
    classes: ClassTable
    ip_series: Sequence[SeriesRow]  # (IpKey, packets, bytes), sorted
    container_series: tuple[ContainerSeries, ...]
    interface_series: tuple[InterfaceSeries, ...]
    statuses: tuple[SourceStatus, ...]
    resets: tuple[tuple[str, int], ...]
    quotas: QuotaConfig
    created: tuple[tuple[str, int], ...] = ()  # (veid, when its first series was made), where known
    tokens: Tokens = Tokens()
    at: float = 0.0  # wall time of the read (s since the epoch)
