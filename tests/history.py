"""A known traffic history as OpenMetrics text, and the exact bytes it holds per container and period.

The truth is summed from the traffic the generator makes (what each
container sent and received in each 15 s interval), not read back from the
samples.  An interval's traffic belongs to the period that holds the
interval's sample: t0 < t <= t1 (the report's boundary rule).

What it holds, over two days around a month boundary:

- containers with addresses in classes 1 and 2, and traffic in class 0
  (which the quota classes leave out);
- a container with per-address series and kernel series on the same node
  (the kernel series must not count), and one with kernel series only;
- an address that moves to another container mid-way;
- a container that migrates to another instance mid-way;
- a series whose counter is reset (its exporter lost its state);
- a container that appears mid-way;
- quotas, and the quota classes.
"""

from __future__ import annotations

import bisect
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

STEP = 15  # s between samples
UTC = timezone.utc
START = datetime(2026, 10, 30, 23, 0, tzinfo=UTC).timestamp()  # an hour of history before the first period
END = datetime(2026, 11, 2, 0, 0, tzinfo=UTC).timestamp()
MIGRATE = datetime(2026, 10, 31, 15, 7, 30, tzinfo=UTC).timestamp()  # 105: node-a -> node-b
MOVE = datetime(2026, 11, 1, 3, 30, tzinfo=UTC).timestamp()  # 192.0.2.13: 103 -> 104
RESET = datetime(2026, 10, 31, 23, 50, tzinfo=UTC).timestamp()  # 102's per-address series restart from 0
APPEAR = datetime(2026, 11, 1, 10, 0, 7, tzinfo=UTC).timestamp()  # 106 shows up (not on a sample)
JOB = "vz-traffic"


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    samples: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class History:
    series: list[Series]
    # (veid, direction, class) -> [(time of the sample, bytes that interval)] as generated
    traffic: dict[tuple[str, str, str], list[tuple[float, int]]]

    def truth(self, cuts: Sequence[float], classes: set[str]) -> dict[tuple[float, str, str], int]:
        """(period start, veid, direction) -> bytes, in, out and total, for the classes that count."""
        out: dict[tuple[float, str, str], int] = defaultdict(int)
        for (veid, direction, klass), flows in self.traffic.items():
            if klass not in classes:
                continue
            for t, nbytes in flows:
                i = bisect.bisect_left(cuts, t) - 1  # the period with cuts[i] < t <= cuts[i + 1]
                if 0 <= i < len(cuts) - 1:
                    out[(cuts[i], veid, direction)] += nbytes
                    out[(cuts[i], veid, "total")] += nbytes
        return dict(out)

    def openmetrics(self) -> str:
        families: dict[str, list[Series]] = defaultdict(list)
        for s in self.series:
            families[s.metric].append(s)
        lines = []
        for metric, members in families.items():
            kind = (
                "gauge" if metric in ("vz_traffic_quota_bytes", "vz_traffic_quota_class_info") else "counter"
            )
            name = metric.removesuffix("_total") if kind == "counter" else metric
            lines.append(f"# TYPE {name} {kind}")
            for s in members:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                lines += [f"{metric}{{{labels}}} {v} {t:.3f}" for t, v in s.samples]
        return "\n".join(lines) + "\n# EOF\n"


def generate(seed: int = 7) -> History:
    rng = random.Random(seed)
    times = [START + i * STEP for i in range(int((END - START) // STEP) + 1)]
    series: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
    traffic: dict[tuple[str, str, str], list[tuple[float, int]]] = defaultdict(list)

    def counter(metric: str, **labels: str) -> Series:
        key = (metric, tuple(sorted(labels.items())))
        if key not in series:
            series[key] = Series(metric, {**labels, "job": JOB})
        return series[key]

    totals: dict[int, int] = defaultdict(int)  # id(series) -> its value

    def add(s: Series, t: float, nbytes: int, reset: bool = False) -> None:
        totals[id(s)] = (0 if reset else totals[id(s)]) + nbytes
        s.samples.append((t, totals[id(s)]))

    def hold(s: Series, t: float) -> None:  # a series kept, not growing (retention)
        s.samples.append((t, totals[id(s)]))

    for t in times:
        for ct in ("101", "102", "103", "104", "105", "106"):
            if ct == "106" and t < APPEAR:
                continue
            instance = "node-b" if ct == "105" and t >= MIGRATE else "node-a"
            ips = [f"192.0.2.{int(ct) - 90}"]
            if ct == "104" and t >= MOVE:
                ips.append("192.0.2.13")
            if ct == "103" and t >= MOVE:
                ips = []
            for ip in ips:
                for klass in ("0", "1", "2"):
                    for direction in ("in", "out"):
                        nbytes = rng.randrange(0, 3000) * (1 if klass != "0" else 5)
                        s = counter(
                            "vz_traffic_ip_bytes_total",
                            instance=instance, veid=ct, ip=ip, **{"class": klass}, direction=direction,
                        )  # fmt: skip
                        reset = (
                            ct == "102" and klass == "1" and direction == "in" and RESET <= t < RESET + STEP
                        )
                        add(s, t, nbytes, reset)
                        traffic[(ct, direction, klass)].append((t, nbytes))
                        if ct == "101":  # the kernel counts the same traffic: it must not count twice
                            k = counter(
                                "vz_traffic_container_bytes_total",
                                instance=instance, veid=ct, family="ipv4",
                                **{"class": klass}, direction=direction,
                            )  # fmt: skip
                            add(k, t, nbytes)
        # A container with kernel series only (Virtuozzo 7).
        for klass in ("1", "2"):
            for direction in ("in", "out"):
                nbytes = rng.randrange(0, 2000)
                k = counter(
                    "vz_traffic_container_bytes_total",
                    instance="node-a", veid="107", family="ipv4", **{"class": klass}, direction=direction,
                )  # fmt: skip
                add(k, t, nbytes)
                traffic[("107", direction, klass)].append((t, nbytes))
        # Series kept after their container moved away: exported, unchanged.
        for s in series.values():
            if s.samples and s.samples[-1][0] < t:
                hold(s, t)
    gauges = []
    for instance in ("node-a", "node-b"):
        for klass in ("1", "2"):
            gauges.append(
                Series("vz_traffic_quota_class_info", {"instance": instance, "job": JOB, "class": klass})
            )
            gauges[-1].samples = [(t, 1) for t in times]
        for veid, direction, size in (("101", "total", 10**9), ("105", "out", 5 * 10**8)):
            labels = {"instance": instance, "job": JOB, "veid": veid, "direction": direction}
            gauges.append(Series("vz_traffic_quota_bytes", labels, [(t, size) for t in times]))
    return History([*series.values(), *gauges], dict(traffic))
