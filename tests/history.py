"""A known traffic history as OpenMetrics text, and the exact bytes it holds per container and period.

Two calendar months (September and October 2026) of about 200 containers,
scraped every minute (Prometheus's default scrape interval), written as one
OpenMetrics text per two-hour TSDB block (see tests/tsdb.py).  The truth is
summed from the traffic the generator makes (what each series carried in
each interval between two samples), hour by hour, not
read back from the samples.  An interval's traffic belongs to the period
that holds the interval's sample: t0 < t <= t1 (the report's boundary rule).

What it holds:

- 193 containers with one address each, in class 1 or 2, on node-a or
  node-b; node-b is scraped 7 s after the hour marks, node-a on them;
- containers with addresses in classes 0, 1 and 2 (class 0 is not a quota
  class: the default report leaves it out);
- 101 has per-address series and kernel series of the same traffic on the
  same node (the kernel series must not count); 107 has kernel series only;
- 192.0.2.13 moves from 103 to 104 in mid-October (103's series are kept,
  unchanged, as the exporter keeps them);
- 105 migrates from node-a to node-b in mid-September; node-a keeps its
  final series for seven days and then stops exporting them;
- 102's class 1 "in" series is reset just before the month boundary (its
  exporter lost its state) and counts again from 0;
- 106 appears in mid-October, between two samples; it and 105 on node-b
  have the first-seen time their exporter made them at, so they count from 0;
- node-b is not scraped for 50 minutes across an hour mark (its exporter
  was down): the traffic of those intervals is in its next sample;
- quotas, and the quota classes 1 and 2.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate
from typing import Optional

from tests.tsdb import BLOCK

STEP = 60  # s between samples (Prometheus's default scrape_interval: 1m)
HOUR = 3600
UTC = timezone.utc
FIRST = datetime(2026, 9, 1, tzinfo=UTC).timestamp()  # the first hour mark a report may start at
LAST = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # and the last it may end at
START = FIRST - HOUR  # an hour of history before the first period
MIGRATE = datetime(2026, 9, 15, 15, 7, 30, tzinfo=UTC).timestamp()  # 105: node-a -> node-b
KEPT = 7 * 86400  # s: how long node-a keeps 105's series after it left
MOVE = datetime(2026, 10, 14, 3, 30, tzinfo=UTC).timestamp()  # 192.0.2.13: 103 -> 104
RESET = datetime(2026, 9, 30, 23, 50, tzinfo=UTC).timestamp()  # 102's class-1 "in" series restarts from 0
APPEAR = datetime(2026, 10, 10, 10, 0, 7, tzinfo=UTC).timestamp()  # 106 shows up (not on a sample)
GAP = (  # node-b's exporter is down: no samples at or after the first, before the second
    datetime(2026, 10, 20, 11, 50, tzinfo=UTC).timestamp(),
    datetime(2026, 10, 20, 12, 40, tzinfo=UTC).timestamp(),
)
JOB = "vz-traffic"
IP, KERNEL = "vz_traffic_ip_bytes_total", "vz_traffic_container_bytes_total"
FIRST_SEEN = "vz_traffic_container_first_seen_timestamp_seconds"
OFFSET = {"node-a": 0, "node-b": 7}  # s after START at which each instance is scraped
BULK = 193  # containers with one address each: 1000 ... 1192
PERIOD = 4093  # traffic pattern length (a prime: series with other phases do not line up)
QUOTA_CLASSES = ("1", "2")
QUOTAS = (("101", "total", 10**9), ("105", "out", 5 * 10**8))

Traffic = tuple[str, str, str]  # (veid, direction, class)


def index(t: float, offset: int) -> int:
    """The index of the first sample at or after t of an instance scraped at ``offset``."""
    return max(0, -(-(int(t) - int(START) - offset) // STEP))


def after(t: float, offset: int) -> int:
    """The index of the first sample strictly after t."""
    return max(0, (int(t) - int(START) - offset) // STEP + 1)


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    offset: int  # s: its instance's scrape phase
    first: int  # index of its first sample
    grows_until: int  # index after its last growing sample (it is kept, unchanged, after)
    kept_until: int  # index after its last sample
    phase: int = 0  # where in the traffic pattern its traffic starts
    scale: int = 1
    counts: Optional[Traffic] = None  # the traffic it carries (None: the same traffic seen twice)
    reset: Optional[int] = None  # index of the sample at which its counter restarts from 0
    constant: Optional[int] = None  # a gauge's value
    value: int = 0  # at its last written sample

    def prefix(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted({**self.labels, "job": JOB}.items()))
        return f"{self.metric}{{{labels}}} "


class History:
    """The series to write and, once :meth:`blocks` has run, the truth hour by hour."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.pattern = [rng.randrange(0, 3000) for _ in range(PERIOD)] * 2
        self.hours = int(LAST - FIRST) // HOUR
        self.series: list[Series] = []
        self.done = False
        # (veid, direction, class) -> bytes per hour, the hour before FIRST at 0 (hour h is h-1 .. h)
        self.traffic: dict[Traffic, list[int]] = {}
        end = {o: index(LAST + 1, o) for o in OFFSET.values()}  # indices after the last sample
        for k in range(BULK):
            veid, instance, klass = str(1000 + k), ("node-a", "node-b")[k % 2], QUOTA_CLASSES[k // 2 % 2]
            for direction in ("in", "out"):
                labels = {"instance": instance, "veid": veid, "ip": f"198.51.100.{k + 1}", "class": klass}
                self._counter(IP, {**labels, "direction": direction}, instance,
                              0, None, None, (veid, direction, klass), rng)  # fmt: skip
        for ct in ("101", "102", "103", "104", "105", "106"):
            for klass in ("0", "1", "2"):
                for direction in ("in", "out"):
                    labels = {
                        "veid": ct,
                        "ip": f"192.0.2.{int(ct) - 90}",
                        "class": klass,
                        "direction": direction,
                    }
                    counts = (ct, direction, klass)
                    scale = 5 if klass == "0" else 1
                    if ct == "105":  # migrates: node-a keeps its final series for a while, node-b starts at 0
                        self._counter(IP, labels, "node-a", 0, MIGRATE, MIGRATE + KEPT,
                                      counts, rng, scale)  # fmt: skip
                        self._counter(IP, labels, "node-b", MIGRATE, None, None,
                                      counts, rng, scale)  # fmt: skip
                        continue
                    begin = APPEAR if ct == "106" else 0
                    grows = MOVE if ct == "103" else None  # its only address moves to 104
                    s = self._counter(IP, labels, "node-a", begin, grows, None, counts,
                                      rng, scale)  # fmt: skip
                    if ct == "102" and klass == "1" and direction == "in":
                        s.reset = index(RESET, 0)
                    if ct == "104":  # and 192.0.2.13 from 103, as a new series from 0
                        moved = {**labels, "ip": "192.0.2.13"}
                        self._counter(IP, moved, "node-a", MOVE, None, None,
                                      counts, rng, scale)  # fmt: skip
                    if ct == "101":  # the kernel counts the same traffic: it must not count twice
                        kernel = {"veid": ct, "family": "ipv4", "class": klass, "direction": direction}
                        twin = self._counter(KERNEL, kernel, "node-a", 0, None, None,
                                             None, rng, scale)  # fmt: skip
                        twin.phase = s.phase
        for klass in QUOTA_CLASSES:  # 107: kernel series only (Virtuozzo 7)
            for direction in ("in", "out"):
                kernel = {"veid": "107", "family": "ipv4", "class": klass, "direction": direction}
                self._counter(KERNEL, kernel, "node-a", 0, None, None,
                              ("107", direction, klass), rng)  # fmt: skip
        for instance, offset in OFFSET.items():
            gauges = [("vz_traffic_quota_class_info", {"class": k}, 1) for k in QUOTA_CLASSES]
            gauges += [("vz_traffic_quota_bytes", {"veid": v, "direction": d}, q) for v, d, q in QUOTAS]
            for metric, labels, value in gauges:
                self.series.append(
                    Series(
                        metric, {**labels, "instance": instance}, offset, 0, 0, end[offset], constant=value
                    )
                )
        # The containers an exporter made within the history say when (105 on node-b, 106): from 0 there.
        for veid, instance, made in (("105", "node-b", MIGRATE), ("106", "node-a", APPEAR)):
            o = OFFSET[instance]
            labels = {"veid": veid, "instance": instance}
            self.series.append(Series(FIRST_SEEN, labels, o, index(made, o), 0, end[o], constant=int(made)))

    def _counter(
        self,
        metric: str,
        labels: dict[str, str],
        instance: str,
        begin: float,
        grows: Optional[float],
        kept: Optional[float],
        counts: Optional[Traffic],
        rng: random.Random,
        scale: int = 1,
    ) -> Series:
        o = OFFSET[instance]
        last = index(LAST + 1, o)
        s = Series(
            metric,
            {**labels, "instance": instance},
            o,
            index(begin, o) if begin else 0,
            index(grows, o) if grows else last,
            index(kept, o) if kept else last,
            phase=rng.randrange(PERIOD),
            scale=scale,
            counts=counts,
        )
        if counts is not None:
            self.traffic.setdefault(counts, [0] * (self.hours + 1))
        self.series.append(s)
        return s

    def blocks(self) -> Iterator[str]:
        """One OpenMetrics text per two-hour block, in time order; the truth is whole once all are read."""
        families = ("vz_traffic_ip_bytes", "vz_traffic_container_bytes", "vz_traffic_quota_class_info",
                    "vz_traffic_quota_bytes", FIRST_SEEN)  # fmt: skip
        order = sorted(
            range(len(self.series)),
            key=lambda i: families.index(self.series[i].metric.removesuffix("_total")),
        )
        prefixes = [self.series[i].prefix() for i in order]
        stamps = {
            o: [str(int(START) + o + STEP * i) for i in range(index(LAST + 1, o))] for o in OFFSET.values()
        }
        first = int(START) // BLOCK * BLOCK
        for b in range(first, int(LAST) + 1, BLOCK):
            lines: list[str] = []
            family = None
            for i, prefix in zip(order, prefixes):
                s = self.series[i]
                lo, hi = max(index(b, s.offset), s.first), min(index(b + BLOCK, s.offset), s.kept_until)
                if lo >= hi:
                    continue
                name = s.metric.removesuffix("_total")
                if name != family:
                    kind = "counter" if s.metric.endswith("_total") else "gauge"
                    lines.append(f"# TYPE {name} {kind}\n")
                    family = name
                values = self._values(s, lo, hi, b)
                g0, g1 = self._gap(s)
                lines += [
                    f"{prefix}{v} {t}\n"
                    for j, (v, t) in enumerate(zip(values, stamps[s.offset][lo:hi]), lo)
                    if not g0 <= j < g1
                ]
            lines.append("# EOF\n")
            yield "".join(lines)
        self.done = True

    def _values(self, s: Series, lo: int, hi: int, block: int) -> list[int]:
        if s.constant is not None:
            return [s.constant] * (hi - lo)
        values: list[int] = []
        grow = max(lo, min(hi, s.grows_until))  # samples lo .. grow - 1 grow, the rest are kept
        cuts = sorted({lo, grow, *(c for c in (s.reset,) if c is not None and lo < c < grow)})
        for a, c in zip(cuts, cuts[1:]):
            if a == s.reset:
                s.value = 0
            start = (s.phase + a) % PERIOD
            carried = self.pattern[start : start + c - a]
            if s.scale != 1:
                carried = [n * s.scale for n in carried]
            values += list(accumulate(carried, initial=s.value))[1:]
            s.value = values[-1]
            if s.counts is not None:
                self._count(s, a, c, carried, block)
        values += [s.value] * (hi - grow)
        return values

    @staticmethod
    def _gap(s: Series) -> tuple[int, int]:
        """The indices of the samples its instance's exporter did not answer."""
        if s.offset != OFFSET["node-b"]:
            return 0, 0
        return index(GAP[0], s.offset), index(GAP[1], s.offset)

    def _count(self, s: Series, a: int, c: int, carried: list[int], block: int) -> None:
        """Add the traffic of samples a .. c-1 (all in ``block``) to the hours that hold them."""
        hours = self.traffic[s.counts]  # type: ignore[index]
        g0, g1 = self._gap(s)
        lo, hi = max(a, g0), min(c, g1)
        if lo < hi:  # not sampled: its traffic is in the first sample after the gap
            shown = START + s.offset + STEP * g1
            hours[-(-int(shown - FIRST) // HOUR)] += sum(carried[lo - a : hi - a])
            if a < lo:
                self._count(s, a, lo, carried[: lo - a], block)
            if hi < c:
                self._count(s, hi, c, carried[hi - a :], block)
            return
        for mark in range(block - HOUR, block + BLOCK + 1, HOUR):  # the hour (mark, mark + 1 h]
            lo, hi = max(a, after(mark, s.offset)), min(c, after(mark + HOUR, s.offset))
            h = int(mark - FIRST) // HOUR + 1
            if lo < hi and 0 <= h <= self.hours:
                hours[h] += sum(carried[lo - a : hi - a])

    def truth(self, cuts: Sequence[float], classes: set[str]) -> dict[tuple[float, str, str], int]:
        """(period start, veid, direction) -> bytes, in, out and total, for the classes that count.

        The cuts are hour marks within [FIRST, LAST].
        """
        assert self.done, "the truth is summed while the blocks are written"
        assert all(FIRST <= t <= LAST and (t - FIRST) % HOUR == 0 for t in cuts), cuts
        out: dict[tuple[float, str, str], int] = {}
        for (veid, direction, klass), hours in self.traffic.items():
            if klass not in classes:
                continue
            for t0, t1 in zip(cuts, cuts[1:]):
                nbytes = sum(hours[int(t0 - FIRST) // HOUR + 1 : int(t1 - FIRST) // HOUR + 1])
                for key in ((t0, veid, direction), (t0, veid, "total")):
                    out[key] = out.get(key, 0) + nbytes
        return out
