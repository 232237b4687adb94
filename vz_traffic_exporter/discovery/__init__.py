"""Discovery: who owns which address.

A discovery source returns the containers it knows; :func:`merge` combines
the sources of ``containers.discovery`` in order into one :class:`Inventory`.
New sources (vzlist, prlctl, /proc/vz/veinfo) plug in by adding a module and
an entry in :data:`SOURCES`; nothing downstream changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Protocol

from ..model import Container, Inventory

if TYPE_CHECKING:
    from ..config import Config
    from ..runner import Runner


log = logging.getLogger(__name__)


class DiscoverySource(Protocol):
    name: str

    def discover(self) -> list[Container]:
        """The containers this source knows now; raises on failure."""
        ...


def merge(results: Iterable[Sequence[Container]], generation: int = 0) -> Inventory:
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
    return Inventory(
        MappingProxyType(containers), MappingProxyType(owners), MappingProxyType(conflicts), generation
    )


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
