"""Burstable billing: the P-th percentile of a container's interval rates in a period, in bits per second.

The rule (docs/billing.md):

- A period [t0, t1) is cut into intervals of --percentile-interval from t0:
  [t0, t0 + I), [t0 + I, t0 + 2I), ...; the last one ends at t1 and may be
  shorter.  A 30-day month at 5 minutes is 8,640 intervals.
- An interval's traffic is the report's exact rule on the stored samples,
  with the interval for the period: the sum of the increases from the last
  sample at or before its start to the last sample at or before its end.
  So the intervals of a period add up to its ``bytes``, to the byte, and
  a scrape gap puts the traffic it hides in the interval of the first
  sample after it: never lost, never spread over intervals it did not see.
- Its rate is its bytes x 8 / its length in seconds; an interval without
  traffic (or without samples) has rate 0.
- A container's rate in an interval is the sum over the series its row
  counts (its addresses or kernel series, its classes, its instances).
- The P-th percentile is the nearest rank: the rates sorted from low to
  high, the one at rank ceil(P / 100 x N) of N.  At P = 95 the top 5 % are
  free: 432 of a 30-day month's 8,640 intervals, 36 hours.  It is written
  rounded to the nearest whole bit per second.
- ``in`` and ``out`` are each their own percentile; ``total`` is the larger
  of the two, as carriers bill it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from typing import TYPE_CHECKING, Optional

from .selectors import METRICS, Key, Start, _key, _select, _veids

if TYPE_CHECKING:
    from . import Report


@dataclass(frozen=True)
class Percentile:
    """--percentile P with --percentile-interval (seconds)."""

    rank: Fraction  # P / 100
    interval: int
    text: str  # P as given, for the column's name

    @property
    def column(self) -> str:
        return f"p{self.text}_bps"


def cuts(t0: float, t1: float, interval: int) -> list[float]:
    """The intervals' boundaries: t0, t0 + I, ... and t1."""
    found = [t0]
    while found[-1] + interval < t1:
        found.append(found[-1] + interval)
    return [*found, t1]


def nearest_rank(values: Sequence[Fraction], rank: Fraction) -> Fraction:
    """The value at rank ceil(rank x N) of the N values sorted from low to high (0 for none)."""
    if not values:
        return Fraction(0)
    ordered = sorted(values)
    return ordered[max(1, math.ceil(rank * len(ordered))) - 1]


def bps(per_interval: Sequence[int], boundaries: Sequence[float]) -> list[Fraction]:
    """Each interval's rate in bits per second, exactly."""
    return [
        Fraction(8 * nbytes) / Fraction(end - start).limit_denominator(1000)
        for nbytes, start, end in zip(per_interval, boundaries, boundaries[1:])
    ]


def container_percentiles(
    per_series: Mapping[tuple[str, str], Iterable[Sequence[int]]],
    boundaries: Sequence[float],
    rank: Fraction,
) -> dict[tuple[str, str], int]:
    """(veid, direction) -> the percentile in bit/s, "total" the larger of in and out.

    per_series: per (veid, direction in/out), each counted series' bytes per interval.
    """
    found: dict[tuple[str, str], int] = {}
    n = len(boundaries) - 1
    for (veid, direction), series in per_series.items():
        summed = [0] * n
        for one in series:
            for i, nbytes in enumerate(one):
                summed[i] += nbytes
        found[(veid, direction)] = round(nearest_rank(bps(summed, boundaries), rank))
    for veid in {veid for veid, _ in found}:
        found[(veid, "total")] = max(found.get((veid, "in"), 0), found.get((veid, "out"), 0))
    return found


def interval_bytes(
    values: Sequence[Optional[float]],
    start: Optional[float],
    near: bool = True,
    flagged: Iterable[int] = (),
) -> tuple[list[int], dict[int, Optional[float]]]:
    """A series' bytes per interval from its values at the intervals' ends (None: no sample in that
    interval, the value carries), and the intervals whose traffic needs its raw samples, with the value at
    their start: where the value went down, where a drop was seen (flagged), where the value before was
    carried over a gap (a drop may hide in it), and the first interval of a series with no start (it counts
    from its first sample, not from 0).

    start: its value at the period's start (0: made after it; None: not known); near: that value is a sample
    near the start (not one carried from far back, where a drop may hide).
    """
    out = [0] * len(values)
    drops = set(flagged)
    exact: dict[int, Optional[float]] = {}
    last, carried = start, not near
    for i, value in enumerate(values):
        if value is None:
            carried = True
            continue
        if last is None or i in drops or value < last or (carried and value != last):
            exact[i] = last
        else:
            out[i] = round(value) - round(last)
        last, carried = value, False
    return out, exact


BATCH = 20  # containers per range query of a period's intervals (8,640 points a series a month)


class Rates:
    """A report's percentiles: each row's series, interval by interval (see the module)."""

    def __init__(self, report: Report, percentile: Percentile) -> None:
        self.report = report
        self.percentile = percentile

    def of(
        self,
        starts: dict[Key, Start],
        classes: Optional[set[str]],
        veids: Optional[set[str]],
        t0: datetime,
        t1: datetime,
    ) -> dict[tuple[str, str], int]:
        """(veid, direction) -> the percentile of the interval rates, bit/s, of the series its row counts."""
        counted = {
            key: start
            for key, start in starts.items()
            if (classes is None or dict(key[1]).get("class") in classes)
            and (veids is None or dict(key[1]).get("veid") in veids)
            and dict(key[1]).get("direction") in ("in", "out")
        }
        bounds = cuts(t0.timestamp(), t1.timestamp(), self.percentile.interval)
        per_series: dict[tuple[str, str], list[list[int]]] = {}
        for key, nbytes in self._intervals(counted, bounds).items():
            labels = dict(key[1])
            per_series.setdefault((labels["veid"], labels["direction"]), []).append(nbytes)
        return container_percentiles(per_series, bounds, self.percentile.rank)

    def _intervals(self, starts: dict[Key, Start], bounds: list[float]) -> dict[Key, list[int]]:
        """Each series' bytes in each interval between bounds, by the exact rule (see :mod:`.rates`)."""
        interval = self.percentile.interval
        client = self.report.client
        ends = bounds[1:]
        values: dict[Key, list[Optional[float]]] = {key: [None] * len(ends) for key in starts}
        drops: dict[Key, set[int]] = {key: set() for key in starts}
        for metric in METRICS:
            mine = [key for key in starts if key[0] == metric]
            for extra in _veids((dict(key[1]).get("veid", "") for key in mine), BATCH):
                selected = _select(metric, self.report.inner, extra)
                for labels, points in client.grid(f"last_over_time({selected}[{interval}s])", ends):
                    row = values.get(_key(metric, labels))
                    for i, value in points.items() if row is not None else ():
                        row[i] = value  # type: ignore[index]
                for labels, points in client.grid(f"resets({selected}[{2 * interval}s]) > 0", ends):
                    drops.get(_key(metric, labels), set()).update(points)
        found = {}
        for key, start in starts.items():
            nbytes, exact = interval_bytes(values[key], start.value, start.near, drops[key])
            for i, at_start in exact.items():
                t0 = datetime.fromtimestamp(bounds[i], timezone.utc)
                t1 = datetime.fromtimestamp(bounds[i + 1], timezone.utc)
                window = int(bounds[i + 1] - bounds[i]) + interval
                nbytes[i] = self.report._exact(key, t0, t1, window, at_start)[0]
            found[key] = nbytes
        return found
