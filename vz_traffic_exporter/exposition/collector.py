"""One snapshot per scrape, turned into the text exposition.

The per-series families and the container info (tens of thousands of samples
on a large node) are written straight to text; every other family goes
through prometheus-client const metric families and its text writer.  Both
write the same format: labels sorted by name, values as prometheus-client
formats them, except that whole numbers are written as integers (exact where
a float's text would round them).  A :class:`Renderer` kept across scrapes writes a sample line
again only when its value changed: on a large node most counters are idle
between two scrapes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Callable, Optional

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from .. import cycles
from ..config import QuotaConfig
from ..discovery.parsing import text_of
from ..model import Container, SeriesKey, SeriesRow, Snapshot
from ..names import DISCOVERY_SOURCES
from . import Part

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
    "vz_traffic_quota_bytes": (
        "gauge",
        "Configured traffic quota of a container for its billing month; direction in, out or total.",
        ["veid", "direction"],
    ),
    "vz_traffic_quota_cycle_start_timestamp_seconds": (
        "gauge",
        "Start of the container's current billing month (its cycle day, local midnight in quotas.timezone).",
        ["veid"],
    ),
    "vz_traffic_quota_cycle_end_timestamp_seconds": (
        "gauge",
        "End of the container's current billing month: the start of the next one.",
        ["veid"],
    ),
    "vz_traffic_quota_class_info": (
        "gauge",
        "Network classes whose traffic counts toward the quotas (always 1).",
        ["class"],
    ),
    "vz_traffic_container_first_seen_timestamp_seconds": (
        "gauge",
        "When this exporter made the container's first series, from zero: all it counted came after.",
        ["veid"],
    ),
}


def _family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
    kind, doc, labels = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


# The per-series families, written straight to text (see render).
SERIES_FAMILIES = tuple(name for name in METRICS if name.endswith(("bytes_total", "packets_total")))


def _kernel_rows(snap: Snapshot) -> dict[str, list[tuple[str, float]]]:
    """Rows (label text, value) of the container and interface families; bytes and packets share the text."""
    rows: dict[str, list[tuple[str, float]]] = {name: [] for name in SERIES_FAMILIES[2:]}
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


_float: Callable[[float], str] = floatToGoString  # the library's number format


def _value(value: float) -> str:
    """A sample's value: a whole number as an integer (exact, whatever its size), else as the library writes
    floats."""
    return str(value) if type(value) is int else _float(value)


_SPECIAL = re.compile('[\\\\\n"\ud800-\udfff]')


def _escape(value: str) -> str:
    """A label value as the text format writes it: never fails, whatever the value holds."""
    if _SPECIAL.search(value) is None:
        return value
    # A lone surrogate cannot be written as UTF-8: it becomes U+FFFD.
    value = text_of(value)
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labeller(names: Sequence[str]) -> Callable[[Sequence[str]], str]:
    """Label values in the order of names -> their text, sorted by label name as the format has them."""
    order = sorted(range(len(names)), key=names.__getitem__)
    keys = [f'{names[i]}="' for i in order]

    def text(values: Sequence[str]) -> str:
        return '",'.join([key + _escape(values[i]) for key, i in zip(keys, order)]) + '"'

    return text


def _head(name: str) -> str:
    kind, doc, _ = METRICS[name]
    return f"# HELP {name} {_escape(doc)}\n# TYPE {name} {kind}\n"


def _series_text(name: str, rows: Iterable[tuple[str, float]]) -> str:
    return _head(name) + "".join([f"{name}{{{labels}}} {_value(value)}\n" for labels, value in rows])


_ip_labels = _labeller(IP_LABELS)
_info_labels = _labeller(["veid", "name"])
_quota_labels = _labeller(["veid", "direction"])
IP_BYTES, IP_PACKETS = SERIES_FAMILIES[:2]
INFO = "vz_traffic_container_info"
QUOTA = "vz_traffic_quota_bytes"
CYCLE_START = "vz_traffic_quota_cycle_start_timestamp_seconds"
CYCLE_END = "vz_traffic_quota_cycle_end_timestamp_seconds"
FIRST_SEEN = "vz_traffic_container_first_seen_timestamp_seconds"
TEXT_FAMILIES = (
    *SERIES_FAMILIES,
    INFO,
    QUOTA,
    CYCLE_START,
    CYCLE_END,
    FIRST_SEEN,
)  # written as text here, the rest by prometheus-client
_veid_labels = _labeller(["veid"])


class Renderer:
    """Writes snapshots as the text exposition (format 0.0.4), one scrape after another.

    Keeps each address series' sample lines with the values they show, and
    the container info with the containers it shows: what did not change
    since the last scrape is not written again.
    """

    def __init__(self) -> None:
        self._keys: list[SeriesKey] = []  # the address series of the last scrape, in order
        self._labels: list[str] = []  # and their label text
        self._ip_classes: set[int] = set()  # and their classes
        self._made: dict[str, tuple[tuple[object, ...], list[Part]]] = {}  # part -> (its inputs, its parts)
        self._serial = 0  # the token of the last part written
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> bytes:
        return b"".join([part.data for part in self.parts(snap)])

    def parts(self, snap: Snapshot) -> list[Part]:
        """The exposition in parts, each with the same token as last time when none of its lines changed:
        the address series' bytes and packets (tens of thousands of lines on a large node), the kernel
        series, the container info, the quotas, the first-seen times, and the few families the library
        writes.  A part is written again only when the snapshot's tokens of its inputs moved."""
        tokens = snap.tokens
        with self._lock:
            if not snap.ip_series:
                self._keys, self._labels, self._ip_classes = [], [], set()
            parts = self._kept(
                "ip", (tokens.ip, len(snap.ip_series)), lambda: self._ip_text_of(snap.ip_series)
            )
            parts += self._kept(
                "kernel", (tokens.containers, tokens.interfaces), lambda: [_kernel_text(snap)]
            )
            containers = snap.inventory.containers
            parts += self._kept("info", (tokens.inventory,), lambda: [_info_text(containers)])
            parts += self._kept(
                "quotas", (tokens.inventory, snap.quotas), lambda: [_quota_text(containers, snap.quotas)]
            )
            months = _months(snap.quotas, snap.at)
            parts += self._kept(
                "cycles",
                (tokens.inventory, snap.quotas, months),
                lambda: [_cycle_text(containers, snap.quotas, months)],
            )
            created = snap.created
            parts += self._kept(
                "first_seen",
                (tokens.created,),
                lambda: [_family_text(FIRST_SEEN, [(_veid_labels((v,)), at) for v, at in created])],
            )
            ip_classes = self._ip_classes
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TrafficCollector(lambda: snap, ip_classes))
        parts.append(Part("library", None, generate_latest(registry)))
        return parts

    def _kept(self, name: str, inputs: tuple[object, ...], make: Callable[[], list[bytes]]) -> list[Part]:
        """A part's pieces as last written, or written again when an input is not known (None) or moved."""
        cached = self._made.get(name)
        if cached is None or cached[0] != inputs or None in inputs:
            self._serial += 1
            pieces = [Part(f"{name}{i}", self._serial, data) for i, data in enumerate(make()) if data]
            cached = self._made[name] = (inputs, pieces)
        return list(cached[1])

    def _ip_text_of(self, rows: Sequence[SeriesRow]) -> list[bytes]:
        """Every line written anew from the rows; only the label text is kept between scrapes."""
        if not rows:
            return []
        keys = [row[0] for row in rows]
        if keys != self._keys:
            known = dict(zip(self._keys, self._labels))
            self._labels = [known.get(key) or _ip_labels(key[1:]) for key in keys]
            self._keys = keys
            self._ip_classes = _classes(rows)
        labels = self._labels
        return [_lines(IP_BYTES, labels, rows, 2), _lines(IP_PACKETS, labels, rows, 1)]


def _family_text(family: str, rows: list[tuple[str, float]]) -> bytes:
    return _series_text(family, rows).encode() if rows else b""


def _kernel_text(snap: Snapshot) -> bytes:
    return "".join([_series_text(name, rows) for name, rows in _kernel_rows(snap).items() if rows]).encode()


def _info_text(containers: Mapping[str, Container]) -> bytes:
    return _family_text(INFO, [(_info_labels((veid, ct.name)), 1) for veid, ct in sorted(containers.items())])


def _quota_text(containers: Mapping[str, Container], quotas: QuotaConfig) -> bytes:
    return _family_text(
        QUOTA,
        [
            (_quota_labels((veid, direction)), int(size))
            for veid in sorted({*containers, *quotas.containers})
            for direction, size in quotas.of(veid).items()
        ],
    )


Months = tuple[tuple[int, int, int], ...]  # (cycle day, start, end) of each billing month in use


def _months(quotas: QuotaConfig, at: float) -> Months:
    """The billing month at ``at`` of each cycle day in use (the default's, and containers' own)."""
    now = datetime.fromtimestamp(at, timezone.utc)
    where = cycles.zone(quotas.timezone)
    days = sorted({quotas.cycle_day, *(q.cycle_day for q in quotas.containers.values() if q.cycle_day)})
    found = []
    for day in days:
        start, end = cycles.Cycle(where, day).around(now)
        found.append((day, int(start.timestamp()), int(end.timestamp())))
    return tuple(found)


def _cycle_text(containers: Mapping[str, Container], quotas: QuotaConfig, months: Months) -> bytes:
    """Each container's billing month, start and end (a container of its own cycle day, or the default)."""
    of_day = {day: (start, end) for day, start, end in months}
    rows = [
        (_veid_labels((veid,)), of_day[quotas.day_of(veid)])
        for veid in sorted({*containers, *quotas.containers})
    ]
    return _family_text(CYCLE_START, [(labels, s) for labels, (s, _) in rows]) + _family_text(
        CYCLE_END, [(labels, e) for labels, (_, e) in rows]
    )


def render(snap: Snapshot) -> bytes:
    """The text exposition of one snapshot, for a one-off (a long-running server keeps a Renderer)."""
    return Renderer()(snap)


_LINES_AT_ONCE = 8192  # lines made into one piece of text at a time: the text is held once, as bytes


def _lines(name: str, labels: list[str], rows: Sequence[SeriesRow], column: int) -> bytes:
    """A family's lines, one per row, in bytes (its totals are integers)."""
    pieces = [_head(name).encode()]
    for at in range(0, len(rows), _LINES_AT_ONCE):
        some = zip(labels[at : at + _LINES_AT_ONCE], rows[at : at + _LINES_AT_ONCE])
        pieces.append("".join([f"{name}{{{text}}} {row[column]}\n" for text, row in some]).encode())
    return b"".join(pieces)


def _classes(rows: Sequence[SeriesRow]) -> set[int]:
    return set(map(int, {row[0][3] for row in rows}))


class TrafficCollector(Collector):
    """The families not written as text (TEXT_FAMILIES), as prometheus-client families."""

    def __init__(self, snapshot: Callable[[], Snapshot], ip_classes: Optional[set[int]] = None) -> None:
        """ip_classes: those of the snapshot's address series, when known."""
        self._snapshot = snapshot
        self._ip_classes = ip_classes

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        fam = {name: _family(name) for name in METRICS if name not in TEXT_FAMILIES}
        for klass in snap.classes.classes:
            fam["vz_traffic_class_info"].add_metric([str(klass.id), klass.name], 1)
        # Unset quotas.classes: every class counts, so every class of this node is listed (the
        # configured ones, and any that a kernel source counts in).
        present = {
            *snap.classes.ids(),
            *(_classes(snap.ip_series) if self._ip_classes is None else self._ip_classes),
        }
        present.update(c.klass for c in snap.container_series)
        for ident in snap.quotas.counted_classes(present):
            fam["vz_traffic_quota_class_info"].add_metric([str(ident)], 1)
        for status in snap.statuses:
            fam["vz_traffic_source_up"].add_metric([status.name], 1 if status.up else 0)
            fam["vz_traffic_source_duration_seconds"].add_metric([status.name], status.duration)
        resets = dict(snap.resets)
        for status in snap.statuses:
            if status.name not in DISCOVERY_SOURCES:  # discovery counts nothing and cannot reset
                resets.setdefault(status.name, 0)
        for source, count in sorted(resets.items()):
            fam["vz_traffic_counter_resets_total"].add_metric([source], count)
        yield from (family for family in fam.values() if family.samples)
