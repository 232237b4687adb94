"""Discovery: who owns which address.

A discovery source returns the containers it knows; :func:`merge` combines
the sources of ``containers.discovery`` in order into one :class:`Inventory`.
New sources (vzlist, prlctl, /proc/vz/veinfo) plug in by adding a module and
an entry in :data:`SOURCES`; nothing downstream changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from ..config import Config
    from ..runner import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Container:
    veid: str  # the CTID: numeric VEID, CTID string or VM UUID; "0" is the host
    name: str = ""
    ips: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()  # host-side network devices


def kernel_veid(ctid: str) -> int | None:
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


class DiscoverySource(Protocol):
    name: str

    def discover(self) -> list[Container]:
        """The containers this source knows now; raises on failure."""
        ...


@dataclass(frozen=True)
class Inventory:
    """Containers by veid, the owner of each address, and the addresses several containers claim."""

    containers: Mapping[str, Container]
    owners: Mapping[str, str]
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

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


def merge(results: Iterable[Sequence[Container]]) -> Inventory:
    """Merge source results in order: the first name for a veid wins, addresses add up.

    An address that two or more containers claim belongs to none of them
    until only one does: it is in ``conflicts`` with its claimants, and its
    traffic is counted for nobody, never for the wrong container.  OpenVZ 7's
    vzlist lists every address inside a container (a Docker bridge's
    172.17.0.1 in many of them); such a shared private address is never
    routed through the node anyway.
    """
    containers: dict[str, Container] = {}
    claims: dict[str, list[str]] = {}
    for found in results:
        for ct in found:
            known = containers.get(ct.veid, Container(ct.veid))
            ips = list(known.ips)
            for ip in ct.ips:
                claimants = claims.setdefault(ip, [])
                if ct.veid not in claimants:
                    claimants.append(ct.veid)
                if ip not in ips:
                    ips.append(ip)
            interfaces = tuple(dict.fromkeys(known.interfaces + ct.interfaces))
            containers[ct.veid] = Container(ct.veid, known.name or ct.name, tuple(ips), interfaces)
    owners = {ip: veids[0] for ip, veids in claims.items() if len(veids) == 1}
    conflicts = {ip: tuple(veids) for ip, veids in claims.items() if len(veids) > 1}
    return Inventory(MappingProxyType(containers), MappingProxyType(owners), MappingProxyType(conflicts))


def report_conflicts(before: Mapping[str, tuple[str, ...]], now: Mapping[str, tuple[str, ...]]) -> None:
    """Log each conflict once, when it starts or changes, and once when it ends."""
    for ip, veids in now.items():
        if before.get(ip) != veids:
            log.warning(
                "address %s is claimed by veids %s: its traffic is counted for none of them "
                "until only one claims it",
                ip,
                ", ".join(veids),
            )
    for ip in before.keys() - now.keys():
        log.info("address %s is claimed by one container again", ip)


def build(config: Config, runner: Runner, procfs: str) -> list[DiscoverySource]:
    """The discovery sources the configuration asks for.

    With no list configured (auto): static, then the first of vzlist,
    prlctl and /proc/vz/veinfo that exists on this host.
    """
    from .prlctl import PrlctlDiscovery
    from .static import StaticDiscovery
    from .veinfo import VeinfoDiscovery
    from .vzlist import VzlistDiscovery

    factories: dict[str, Callable[[], DiscoverySource]] = {
        "static": lambda: StaticDiscovery(config.static),
        "vzlist": lambda: VzlistDiscovery(runner, config.discovery_timeout),
        "prlctl": lambda: PrlctlDiscovery(runner, config.discovery_timeout),
        "veinfo": lambda: VeinfoDiscovery(procfs),
    }
    names = config.discovery
    if names is None:
        names = ("static",)
        if runner.which("vzlist"):
            names += ("vzlist",)
        elif runner.which("prlctl"):
            names += ("prlctl",)
        elif VeinfoDiscovery(procfs).available():
            names += ("veinfo",)
        log.debug("discovery: %s", ", ".join(names))
    return [factories[name]() for name in names]
