"""``report``: exact traffic per container and period, from a server of the Prometheus query API.

How each series' traffic is taken (see :mod:`.compute` for the rule):

- its value at each boundary is its last sample at or before it
  (``last_over_time`` over a short window; a series known at the period's
  start and not seen there is looked for over the period, and keeps its
  value if it has no sample in it; a series first seen at the period's end
  is looked for over a long window before its start);
- where ``resets`` sees a drop in a period, or the value at its end is below
  the one at its start, or the value at its start is not from a sample near
  it (a scrape gap, where a drop may hide), the raw samples of that series in
  that period are read and summed drop by drop from that value;
- a series with no sample at or before the start counts from 0 where the
  exporter made its container after the start
  (``vz_traffic_container_first_seen_timestamp_seconds``), or where another
  series of the same container and exporter had a sample by then (the series
  is new since); else from its first sample, and its rows are incomplete;
- per instance and container, the per-address netfilter series count where
  any of them moved, else the kernel per-container series;
- the classes: ``--classes``, else those in ``vz_traffic_quota_class_info``
  at the end of the period, else every class.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import NamedTuple, Optional, TextIO

from ..cycles import UTC_MONTHS, Cycle
from .compute import Row, SeriesUse, chosen, difference, increase, rows, use_of
from .periods import UsageError, boundaries, stamp
from .promapi import Client, ServerError
from .rates import Percentile, container_percentiles, cuts, interval_bytes

METRICS = {"vz_traffic_ip_bytes_total": True, "vz_traffic_container_bytes_total": False}  # -> per address
SHORT = 600  # s: the window in which a scraped series has its last sample
LONG = 40 * 86400  # s: how far back a series not seen in SHORT is looked for (retention is 35 days)
BATCH = 200  # containers per query that names them
GRID_BATCH = 20  # containers per range query of a percentile's intervals (8,640 points a series a month)
FIRST_SEEN = "vz_traffic_container_first_seen_timestamp_seconds"
SERIES_LABELS = frozenset({"ip", "class", "direction", "family"})  # what tells a container's series apart
SHOWN = 5  # series named in a warning

Key = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted labels)


class Start(NamedTuple):
    """A series' value at a period's start (0: made after it; None: not known), and whether that value is a
    sample near the start (not one carried from far back, where a drop may hide)."""

    value: Optional[float]
    near: bool


def matchers(selector: Optional[str]) -> str:
    """The matchers inside a selector like '{job="vz"}' (ValueError when it is not one)."""
    if not selector:
        return ""
    text = selector.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"--selector: {selector!r} is not a label matcher like '{{job=\"vz-traffic\"}}'")
    return text[1:-1].strip().rstrip(",")


def _key(metric: str, labels: dict[str, str]) -> Key:
    return metric, tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _group(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A series' container on its exporter: its labels less those that tell the container's series apart."""
    return tuple((k, v) for k, v in labels if k not in SERIES_LABELS)


def _shown(key: Key) -> str:
    return f"{key[0]}{{{', '.join(f'{k}={v}' for k, v in key[1])}}}"


def _select(metric: str, inner: str, extra: str = "") -> str:
    parts = [p for p in (inner, extra) if p]
    return f"{metric}{{{', '.join(parts)}}}"


def _veids(veids: Iterable[str], batch: int = BATCH) -> Iterable[str]:
    names = sorted(set(veids))
    for i in range(0, len(names), batch):
        yield 'veid=~"' + "|".join(re.escape(v).replace("\\", "\\\\") for v in names[i : i + batch]) + '"'


class Progress:
    """How far a report is, on stderr: a bar on a terminal, else a line every few seconds."""

    EVERY = 5.0  # s between lines when stderr is not a terminal

    def __init__(self, stream: Optional[TextIO]) -> None:
        self.stream = stream
        self.bar = bool(stream is not None and stream.isatty())
        self.said_at = time.monotonic()

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.stream is None or total <= 0:
            return
        if self.bar:
            width = 30
            filled = width * done // total
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}\x1b[K")
            if done == total:
                self.stream.write("\n")
            self.stream.flush()
        elif time.monotonic() - self.said_at >= self.EVERY or done == total:
            self.said_at = time.monotonic()
            print(f"report: {done}/{total} {what}", file=self.stream, flush=True)


class Report:
    def __init__(
        self,
        client: Client,
        selector: Optional[str],
        progress: Optional[TextIO] = None,
        cycle: Cycle = UTC_MONTHS,
        percentile: Optional[Percentile] = None,
    ) -> None:
        """progress: where to show how far it is (None: nowhere); cycle: the billing month and the zone of
        the periods and of the times written."""
        self.client = client
        self.cycle = cycle
        self.percentile = percentile
        self.inner = matchers(selector)
        self.progress = Progress(progress)
        self.warnings: list[str] = []

    def _values(self, at: datetime, window: int, extra: str = "") -> dict[Key, float]:
        found = {}
        for metric in METRICS:
            expr = f"last_over_time({_select(metric, self.inner, extra)}[{window}s])"
            for labels, value in self.client.query(expr, at):
                found[_key(metric, labels)] = value
        return found

    def _fill(self, values: dict[Key, float], missing: set[Key], at: datetime, window: int = LONG) -> None:
        """Look further back, ``window`` seconds before ``at``, for series not seen near it."""
        if not missing:
            return
        for extra in _veids(dict(key[1]).get("veid", "") for key in missing):
            for key, value in self._values(at, window, extra).items():
                if key in missing:
                    values[key] = value

    def _carry(self, before: dict[Key, float], after: dict[Key, float], t0: datetime, t1: datetime) -> None:
        """The value at t1 of series known at t0 and not scraped near t1: their last sample in (t0, t1],
        else still their value at t0 (a series kept without samples does not change)."""
        missing = before.keys() - after.keys()
        self._fill(after, missing, t1, int((t1 - t0).total_seconds()))
        for key in missing - after.keys():
            after[key] = before[key]

    def traffic(
        self, cuts: Sequence[datetime], veids: Optional[set[str]] = None
    ) -> Iterator[tuple[dict[SeriesUse, tuple[int, int]], set[SeriesUse], dict[Key, Start]]]:
        """Per period, in order, (bytes, resets) of every series that counts, those without a known start
        (said on stderr for the containers of veids, None: all), and each counted series' start.

        Two boundaries at a time: what is held is one period's series, however long the report.
        """
        before = self._values(cuts[0], SHORT)
        near = set(before)  # the series whose value at the boundary is a sample near it
        for i, (t0, t1) in enumerate(zip(cuts, cuts[1:])):
            after = self._values(t1, SHORT)
            near_t1 = set(after)
            self._carry(before, after, t0, t1)
            self._fill(before, after.keys() - before.keys(), t0)  # seen at t1: its value at t0, if any
            window = int((t1 - t0).total_seconds()) + SHORT
            dropped = set()
            for metric in METRICS:
                expr = f"resets({_select(metric, self.inner)}[{window}s]) > 0"
                dropped |= {_key(metric, labels) for labels, _ in self.client.query(expr, t1)}
            started = self._started(before, after.keys() - before.keys(), t0, t1)
            found: dict[SeriesUse, tuple[int, int]] = {}
            unknown: dict[SeriesUse, list[Key]] = {}
            starts: dict[Key, tuple[SeriesUse, Start]] = {}
            for key, value in after.items():  # a series not there by t1 did not exist yet: no row
                use = use_of(dict(key[1]), METRICS[key[0]])
                start = before.get(key)
                starts[key] = (use, Start(0.0 if start is None and key in started else start, key in near))
                if start is None and key not in started:
                    unknown.setdefault(use, []).append(key)
                    exact = self._exact(key, t0, t1, window, None)
                elif key in dropped:
                    exact = self._exact(key, t0, t1, window, 0 if start is None else start)
                elif start is not None and (value < start or (key not in near and value != start)):
                    # A drop hides in a gap: around the start (a value that is not a sample near it), or
                    # anywhere when it ends below where it started.
                    exact = self._exact(key, t0, t1, window, start)
                else:
                    exact = (difference(start, value), 0)
                total = found.get(use, (0, 0))
                found[use] = (total[0] + exact[0], total[1] + exact[1])
            counted = chosen(found)
            missing = sorted(
                key
                for use, keys in unknown.items()
                if use in counted and (veids is None or use.veid in veids)
                for key in keys
            )
            if missing:
                more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
                self.warnings.append(
                    f"{self._stamp(t0)} .. {self._stamp(t1)}: no sample at or before the start, and no "
                    "word of the exporter that it made them after: "
                    f"{'; '.join(map(_shown, missing[:SHOWN]))}{more}: "
                    "counted from their first sample in the period; their rows are marked incomplete"
                )
            self.progress(i + 1, len(cuts) - 1, f"periods summed ({self.client.queries} queries)")
            yield (
                {use: found[use] for use in counted},
                {use for use in unknown if use in counted},
                {key: start for key, (use, start) in starts.items() if use in counted},
            )
            before, near = after, near_t1

    def _started(self, before: dict[Key, float], new: set[Key], t0: datetime, t1: datetime) -> set[Key]:
        """Of the series with no sample at or before t0, those known to have started after it, from 0: their
        container's first series was made by its exporter after t0, or another series of it had a sample by
        t0 (so this one is new since)."""
        if not new:
            return set()
        known = {_group(labels) for _, labels in before}
        window = int((t1 - t0).total_seconds()) + SHORT
        expr = f"last_over_time({_select(FIRST_SEEN, self.inner)}[{window}s])"
        known |= {
            _group(_key(FIRST_SEEN, labels)[1])
            for labels, at in self.client.query(expr, t1)
            if at >= t0.timestamp()
        }
        return {key for key in new if _group(key[1]) in known}

    def _exact(
        self, key: Key, t0: datetime, t1: datetime, window: int, start: Optional[float]
    ) -> tuple[int, int]:
        """The series' traffic from its raw samples; start: its value at t0 where no sample in the window is
        at or before t0 (None: not known, from its first sample)."""
        metric, labels = key
        exact = ", ".join(f'{k}="{_quoted(v)}"' for k, v in labels)
        series = self.client.samples(f"{metric}{{{exact}}}[{window}s]", t1)
        samples = series[0][1] if series else []
        nbytes, resets = increase(samples, t0.timestamp(), t1.timestamp(), start)
        if resets:
            self.warnings.append(
                f"{_shown(key)} went down {resets} times in {self._stamp(t0)} .. {self._stamp(t1)}"
            )
        return nbytes, resets

    def check_retention(self, begin: datetime, now: datetime) -> None:
        """UsageError when the server says it keeps less than reaches back to begin (where it says)."""
        kept = self.client.retention()
        if kept is not None and begin.timestamp() < now.timestamp() - kept:
            raise UsageError(
                f"the period starts {self._stamp(begin)}, but the server keeps {kept / 86400:g} days of "
                "samples (storage.tsdb.retention.time): it cannot bill it; ask a server that keeps them (a "
                "longer retention, or a long-term store)"
            )

    def classes(self, at: datetime) -> Optional[set[str]]:
        found = self.client.query(
            f"last_over_time({_select('vz_traffic_quota_class_info', self.inner)}[{SHORT}s])", at
        )
        return {labels["class"] for labels, _ in found if "class" in labels} or None

    def quotas(self, at: datetime) -> dict[tuple[str, str], int]:
        selected = _select("vz_traffic_quota_bytes", self.inner)
        expr = f"max by (veid, direction) (last_over_time({selected}[{SHORT}s]))"
        return {
            (labels.get("veid", ""), labels.get("direction", "")): int(value)
            for labels, value in self.client.query(expr, at)
        }

    def run(
        self,
        begin: datetime,
        finish: datetime,
        step: Optional[str],
        classes: Optional[set[str]],
        veids: Optional[set[str]],
    ) -> Iterator[Row]:
        """The rows, period after period (a generator: rows are written while later ones are read)."""
        cuts = boundaries(begin, finish, step, self.cycle)
        for (t0, t1), (traffic, unknown, starts) in zip(zip(cuts, cuts[1:]), self.traffic(cuts, veids)):
            counted = classes if classes is not None else self.classes(t1)
            found = rows(self._stamp(t0), self._stamp(t1), traffic, counted, self.quotas(t1), veids, unknown)
            if self.percentile is not None:
                rates = self._percentiles(starts, counted, veids, t0, t1)
                found = [
                    replace(row, percentile_bps=rates.get((row.veid, row.direction), 0)) for row in found
                ]
            yield from found

    def _percentiles(
        self,
        starts: dict[Key, Start],
        classes: Optional[set[str]],
        veids: Optional[set[str]],
        t0: datetime,
        t1: datetime,
    ) -> dict[tuple[str, str], int]:
        """(veid, direction) -> the percentile of the interval rates, bit/s, of the series its row counts."""
        assert self.percentile is not None
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
        assert self.percentile is not None
        interval = self.percentile.interval
        ends = bounds[1:]
        values: dict[Key, list[Optional[float]]] = {key: [None] * len(ends) for key in starts}
        drops: dict[Key, set[int]] = {key: set() for key in starts}
        for metric in METRICS:
            mine = [key for key in starts if key[0] == metric]
            for extra in _veids((dict(key[1]).get("veid", "") for key in mine), GRID_BATCH):
                selected = _select(metric, self.inner, extra)
                for labels, points in self.client.grid(f"last_over_time({selected}[{interval}s])", ends):
                    row = values.get(_key(metric, labels))
                    for i, value in points.items() if row is not None else ():
                        row[i] = value  # type: ignore[index]
                for labels, points in self.client.grid(f"resets({selected}[{2 * interval}s]) > 0", ends):
                    drops.get(_key(metric, labels), set()).update(points)
        found = {}
        for key, start in starts.items():
            nbytes, exact = interval_bytes(values[key], start.value, start.near, drops[key])
            for i, at_start in exact.items():
                t0 = datetime.fromtimestamp(bounds[i], timezone.utc)
                t1 = datetime.fromtimestamp(bounds[i + 1], timezone.utc)
                nbytes[i] = self._exact(key, t0, t1, int(bounds[i + 1] - bounds[i]) + interval, at_start)[0]
            found[key] = nbytes
        return found

    def _stamp(self, t: datetime) -> str:
        return stamp(t, self.cycle.where)


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


__all__ = ["Report", "Row", "ServerError"]
