"""The kernel room: the kernel's own per-class accounting, and the containers' host-side interfaces.

Where several kernel sources have the same container series, one wins for
bytes and packets together (``names.CONTAINER_PRECEDENCE``): nft_counters
(Virtuozzo 9, complete), else venetstat's bytes with vznetstat's packets
(Virtuozzo 7: both read the same kernel counters), else vznetstat alone.
Virtuozzo 9 counts a packet in every class whose networks hold its peer
(:func:`~..classes.nesting`); its classes are made exclusive here, and the
accumulator keeps them from ever going down (its floors, in the state file).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cached_property
from typing import Callable, Optional

from ..accounting import Accumulator, Observation
from ..classes import Nesting, nesting
from ..config import Config
from ..model import (
    CONTAINER_SERIES,
    INTERFACE_SERIES,
    ContainerSeries,
    InterfaceKey,
    InterfaceSeries,
    Inventory,
    KernelKey,
)
from ..runner import Runner
from ..sources import KernelSource
from ..sources.interfaces import InterfacesSource
from ..sources.nft_counters import NftCountersSource
from ..sources.venetstat import VenetstatSource
from ..sources.vznetstat import VznetstatSource

log = logging.getLogger(__name__)
FAMILY_VERSIONS = {"ipv4": 4, "ipv6": 6}
Totals = dict[str, tuple[int, int]]  # per source, (packets, bytes)


class KernelRoom:
    def __init__(
        self, config: Config, runner: Runner, accumulator: Accumulator, procfs: str, sysfs: str
    ) -> None:
        self.config = config
        self.accumulator = accumulator
        candidates: tuple[KernelSource, ...] = (
            VenetstatSource(procfs),
            NftCountersSource(runner),
            VznetstatSource(runner),
        )
        enabled = [c for c in candidates if self._enabled(c.name, c.available)]
        names = [c.name for c in enabled]
        if "nft_counters" in names and "vznetstat" in names and config.kernel.vznetstat is None:
            # Virtuozzo 9: the nft counters hold everything vznetstat prints, and its vznetstat
            # saturates packet counts and can abort or miss containers on larger nodes.
            log.info("kernel source vznetstat: off, the Virtuozzo 9 nft counters are read instead")
            enabled = [c for c in enabled if c.name != "vznetstat"]
        self.sources = enabled
        interfaces = InterfacesSource(sysfs)
        self.interfaces = interfaces if self._enabled("interfaces", interfaces.available) else None

    def _enabled(self, name: str, available: Callable[[], bool]) -> bool:
        setting = getattr(self.config.kernel, name)
        if setting is None:
            found = available()
            log.debug("kernel source %s: %s", name, "found" if found else "not found, off")
            return found
        return bool(setting)

    def steps(self, inventory: Inventory) -> list[tuple[str, Callable[[], None]]]:
        """One read step per enabled source, by its name."""
        found: list[tuple[str, Callable[[], None]]] = [
            (source.name, lambda source=source: self._read(source, inventory))  # type: ignore[misc]
            for source in self.sources
        ]
        if self.interfaces is not None:
            found.append(("interfaces", lambda: self._read_interfaces(inventory)))
        return found

    def _read(self, source: KernelSource, inventory: Inventory) -> None:
        self.accumulator.update(
            source.name,
            [
                Observation(
                    r.counter,
                    KernelKey(
                        CONTAINER_SERIES,
                        source.name,
                        inventory.ctid_of(r.kernel_id),
                        str(r.klass),
                        r.direction,
                        r.family,
                    ),
                    r.packets if r.packets is not None else 0,
                    r.bytes,
                    r.packet_bits,
                    r.epoch,
                )
                for r in source.read()
            ],
        )

    def _read_interfaces(self, inventory: Inventory) -> None:
        assert self.interfaces is not None
        readings = self.interfaces.read(inventory.interface_owners)
        self.accumulator.update(
            "interfaces",
            [
                Observation(
                    r.counter,
                    InterfaceKey(INTERFACE_SERIES, veid, r.interface, r.direction),
                    r.packets,
                    r.bytes,
                )
                for veid, r in readings
            ],
        )

    def interface_series(self) -> tuple[InterfaceSeries, ...]:
        return tuple(
            InterfaceSeries(key[1], key[2], key[3], packets, nbytes)
            for key, packets, nbytes in self.accumulator.rows(INTERFACE_SERIES)
        )

    def container_series(self) -> tuple[ContainerSeries, ...]:
        """One series per (veid, class, direction, family) from the best source.

        Classes that are not configured are shown only once they counted something.
        """
        found: dict[tuple[str, str, str, str], Totals] = {}
        for key, p, b in self.accumulator.rows(CONTAINER_SERIES):
            k = KernelKey._make(key)
            found.setdefault((k.veid, k.klass, k.direction, k.family), {})[k.source] = (p, b)
        configured = {str(i) for i in self.config.classes.ids()}
        exclusive = self._exclusive(found)
        out = []
        for (veid, klass, direction, family), by_source in sorted(found.items()):
            packets: Optional[int]
            if "nft_counters" in by_source:
                if (veid, klass, direction, family) not in exclusive:
                    continue  # its class overlaps another in a way no subtraction undoes
                packets, nbytes = exclusive[(veid, klass, direction, family)]
            elif "venetstat" in by_source:
                nbytes = by_source["venetstat"][1]
                packets = by_source["vznetstat"][0] if "vznetstat" in by_source else None
            else:
                packets, nbytes = by_source["vznetstat"]
            if klass in configured or nbytes or packets:
                out.append(ContainerSeries(veid, int(klass), direction, family, nbytes, packets))
        return tuple(out)

    def _exclusive(
        self, found: Mapping[tuple[str, str, str, str], Totals]
    ) -> dict[tuple[str, ...], tuple[int, int]]:
        """The nft counters' totals made exclusive: a class's minus its nested classes'.  Never decreasing."""
        raw: dict[tuple[str, str, str], dict[int, tuple[int, int]]] = {}
        for (veid, name, direction, family), by_source in found.items():
            if "nft_counters" in by_source:
                raw.setdefault((veid, direction, family), {})[int(name)] = by_source["nft_counters"]
        out: dict[tuple[str, ...], tuple[int, int]] = {}
        for (veid, direction, family), classes in raw.items():
            nest = self._nesting[family]
            for klass, (packets, nbytes) in classes.items():
                if klass in nest.underivable:
                    continue
                for child in nest.children(klass):
                    child_packets, child_bytes = classes.get(child, (0, 0))
                    packets, nbytes = packets - child_packets, nbytes - child_bytes
                key = (veid, str(klass), direction, family)
                out[key] = self.accumulator.floor(key, packets, nbytes)
        return out

    @cached_property
    def _nesting(self) -> dict[str, Nesting]:
        """How the Virtuozzo 9 nft counters' classes nest, per family; said in the log once."""
        found = {family: nesting(self.config.classes, version) for family, version in FAMILY_VERSIONS.items()}
        for family, nest in found.items():
            for klass, parent in sorted(nest.parent.items()):
                log.info(
                    "nft_counters %s: class %d lies inside class %d: class %d's count is made exclusive "
                    "by taking out class %d's",
                    family, klass, parent, parent, klass,
                )  # fmt: skip
            for klass, zero in sorted(nest.zero_inside.items()):
                log.warning(
                    "nft_counters %s: class-0 networks %s overlap class %d: Virtuozzo 9 counts no class 0, "
                    "so their traffic is in class %d's count",
                    family, ", ".join(map(str, dict.fromkeys(zero))), klass, klass,
                )  # fmt: skip
            for klass, why in sorted(nest.underivable.items()):
                log.error(
                    "nft_counters %s: class %d overlaps other classes, and Virtuozzo 9 counts a packet in "
                    "every class that holds its peer: %s; its counts are not exported",
                    family, klass, why,
                )  # fmt: skip
        return found
