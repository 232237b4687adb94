"""Containers listed in the configuration (``containers.static``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import Container

if TYPE_CHECKING:
    from ..config import StaticContainer


class StaticDiscovery:
    name = "static"

    def __init__(self, entries: Sequence[StaticContainer]) -> None:
        self._containers = [Container(e.veid, e.name, e.ips, e.interfaces) for e in entries]

    def discover(self) -> list[Container]:
        return list(self._containers)
