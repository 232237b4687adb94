"""Discovery: who owns which address.

A discovery source returns the containers it knows; :func:`merge` combines
the sources of ``containers.discovery`` in order into one :class:`Inventory`.
New sources (vzlist, prlctl, /proc/vz/veinfo) plug in by adding a module and
an entry in :data:`SOURCES`; nothing downstream changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Container:
    veid: str
    name: str = ""
    ips: tuple[str, ...] = ()


class DiscoverySource(Protocol):
    name: str

    def discover(self) -> list[Container]:
        """The containers this source knows now; raises on failure."""
        ...


@dataclass(frozen=True)
class Inventory:
    """Containers by veid and the owner of each address."""

    containers: Mapping[str, Container]
    owners: Mapping[str, str]

    @classmethod
    def empty(cls) -> Inventory:
        return cls(MappingProxyType({}), MappingProxyType({}))

    def ips(self) -> list[str]:
        return list(self.owners)


def merge(results: Iterable[Sequence[Container]]) -> Inventory:
    """Merge source results in order: the first name wins, addresses add up.

    An address already owned by another container stays with its first owner
    (and is logged): one address is never accounted to two containers.
    """
    containers: dict[str, Container] = {}
    owners: dict[str, str] = {}
    for found in results:
        for ct in found:
            known = containers.get(ct.veid, Container(ct.veid))
            ips = list(known.ips)
            for ip in ct.ips:
                owner = owners.setdefault(ip, ct.veid)
                if owner != ct.veid:
                    log.error(
                        "address %s is claimed by veid %s and %s; kept for %s", ip, owner, ct.veid, owner
                    )
                elif ip not in ips:
                    ips.append(ip)
            containers[ct.veid] = Container(ct.veid, known.name or ct.name, tuple(ips))
    return Inventory(MappingProxyType(containers), MappingProxyType(owners))


def _static(config: Config) -> DiscoverySource:
    from .static import StaticDiscovery

    return StaticDiscovery(config.static)


SOURCES: dict[str, Callable[[Config], DiscoverySource]] = {"static": _static}


def build(config: Config) -> list[DiscoverySource]:
    """The discovery sources the configuration asks for (auto: what exists)."""
    names = config.discovery if config.discovery is not None else ("static",)
    return [SOURCES[name](config) for name in names]
