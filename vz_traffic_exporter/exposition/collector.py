"""The collector: one snapshot per scrape, turned into const metric families."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..exporter import Snapshot

IP_LABELS = ["veid", "ip", "class", "direction"]
CONTAINER_LABELS = ["veid", "class", "direction", "family"]
INTERFACE_LABELS = ["veid", "interface", "direction"]

# name -> (type, help, labels); the README's metrics table is checked against this.
METRICS: dict[str, tuple[str, str, list[str]]] = {
    "vz_traffic_ip_bytes_total": (
        "counter",
        "IP-level bytes of a container address by network class and direction.",
        IP_LABELS,
    ),
    "vz_traffic_ip_packets_total": (
        "counter",
        "Packets of a container address by network class and direction.",
        IP_LABELS,
    ),
    "vz_traffic_container_bytes_total": (
        "counter",
        "IP-level bytes of a container by network class, direction and family, from kernel accounting.",
        CONTAINER_LABELS,
    ),
    "vz_traffic_container_packets_total": (
        "counter",
        "Packets of a container by network class, direction and family, from kernel accounting.",
        CONTAINER_LABELS,
    ),
    "vz_traffic_interface_bytes_total": (
        "counter",
        "Bytes on a container's host-side interface, direction from the container's view.",
        INTERFACE_LABELS,
    ),
    "vz_traffic_interface_packets_total": (
        "counter",
        "Packets on a container's host-side interface, direction from the container's view.",
        INTERFACE_LABELS,
    ),
    "vz_traffic_container_info": ("gauge", "Containers known to discovery (always 1).", ["veid", "name"]),
    "vz_traffic_class_info": ("gauge", "Configured network classes (always 1).", ["class", "name"]),
    "vz_traffic_source_up": ("gauge", "1 if the source's last read succeeded, else 0.", ["source"]),
    "vz_traffic_source_duration_seconds": ("gauge", "Time the source's last read took.", ["source"]),
    "vz_traffic_counter_resets_total": (
        "counter",
        "Kernel counter resets detected and absorbed.",
        ["source"],
    ),
}


def _family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
    kind, doc, labels = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


class TrafficCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        for name in METRICS:
            yield _family(name)

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        fam = {name: _family(name) for name in METRICS}
        for s in snap.ip_series:
            labels = [s.veid, s.ip, str(s.klass), s.direction]
            fam["vz_traffic_ip_bytes_total"].add_metric(labels, s.bytes)
            fam["vz_traffic_ip_packets_total"].add_metric(labels, s.packets)
        for c in snap.container_series:
            labels = [c.veid, str(c.klass), c.direction, c.family]
            fam["vz_traffic_container_bytes_total"].add_metric(labels, c.bytes)
            if c.packets is not None:
                fam["vz_traffic_container_packets_total"].add_metric(labels, c.packets)
        for i in snap.interface_series:
            labels = [i.veid, i.interface, i.direction]
            fam["vz_traffic_interface_bytes_total"].add_metric(labels, i.bytes)
            fam["vz_traffic_interface_packets_total"].add_metric(labels, i.packets)
        for veid, ct in sorted(snap.inventory.containers.items()):
            fam["vz_traffic_container_info"].add_metric([veid, ct.name], 1)
        for klass in snap.classes.classes:
            fam["vz_traffic_class_info"].add_metric([str(klass.id), klass.name], 1)
        for status in snap.statuses:
            fam["vz_traffic_source_up"].add_metric([status.name], 1 if status.up else 0)
            fam["vz_traffic_source_duration_seconds"].add_metric([status.name], status.duration)
        resets = dict(snap.resets)
        for status in snap.statuses:
            resets.setdefault(status.name, 0)
        for source, count in sorted(resets.items()):
            fam["vz_traffic_counter_resets_total"].add_metric([source], count)
        yield from (family for family in fam.values() if family.samples)


def registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    reg.register(TrafficCollector(snapshot))
    return reg
