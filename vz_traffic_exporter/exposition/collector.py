"""One snapshot per scrape, turned into the text exposition.

The per-series families (tens of thousands of samples on a large node) are
written straight to text; every other family goes through prometheus-client
const metric families and its text writer.  Both write the same format:
labels sorted by name, values as prometheus-client formats them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Callable

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

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


# The per-series families, written straight to text (see render).
SERIES_FAMILIES = tuple(name for name in METRICS if name.endswith(("bytes_total", "packets_total")))


def _series_rows(snap: Snapshot) -> dict[str, list[tuple[str, float]]]:
    """Rows (label text, value) of every per-series family; bytes and packets share the text."""
    rows: dict[str, list[tuple[str, float]]] = {name: [] for name in SERIES_FAMILIES}
    ip_labels = _labeller(IP_LABELS)
    for s in snap.ip_series:
        text = ip_labels((s.veid, s.ip, str(s.klass), s.direction))
        rows["vz_traffic_ip_bytes_total"].append((text, s.bytes))
        rows["vz_traffic_ip_packets_total"].append((text, s.packets))
    container_labels = _labeller(CONTAINER_LABELS)
    for c in snap.container_series:
        text = container_labels((c.veid, str(c.klass), c.direction, c.family))
        rows["vz_traffic_container_bytes_total"].append((text, c.bytes))
        if c.packets is not None:
            rows["vz_traffic_container_packets_total"].append((text, c.packets))
    interface_labels = _labeller(INTERFACE_LABELS)
    for i in snap.interface_series:
        text = interface_labels((i.veid, i.interface, i.direction))
        rows["vz_traffic_interface_bytes_total"].append((text, i.bytes))
        rows["vz_traffic_interface_packets_total"].append((text, i.packets))
    return rows


_value: Callable[[float], str] = floatToGoString  # the library's number format
_SPECIAL = re.compile(r'[\\\n"]')


def _escape(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return value
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labeller(names: Sequence[str]) -> Callable[[Sequence[str]], str]:
    """Label values in the order of names -> their text, sorted by label name as the format has them."""
    order = sorted(range(len(names)), key=names.__getitem__)
    keys = [f'{names[i]}="' for i in order]

    def text(values: Sequence[str]) -> str:
        return '",'.join([key + _escape(values[i]) for key, i in zip(keys, order)]) + '"'

    return text


def _series_text(name: str, rows: Iterable[tuple[str, float]]) -> str:
    kind, doc, _ = METRICS[name]
    lines = [f"# HELP {name} {_escape(doc)}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{{{labels}}} {_value(value)}" for labels, value in rows]
    return "\n".join(lines) + "\n"


def render(snap: Snapshot) -> bytes:
    """The text exposition (format 0.0.4) of one snapshot."""
    parts = [_series_text(name, rows) for name, rows in _series_rows(snap).items() if rows]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrafficCollector(lambda: snap))
    return "".join(parts).encode() + generate_latest(registry)


class TrafficCollector(Collector):
    """The families other than the per-series ones, as prometheus-client metric families."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        fam = {name: _family(name) for name in METRICS if name not in SERIES_FAMILIES}
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
