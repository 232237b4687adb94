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

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Optional, TextIO

from ..cycles import UTC_MONTHS, Cycle
from .compute import Row, SeriesUse, chosen, difference, increase, rows, use_of
from .periods import UsageError, boundaries, stamp
from .promapi import Client, ServerError
from .rates import Percentile, Rates
from .selectors import (
    FIRST_SEEN,
    LONG,
    METRICS,
    SHORT,
    SHOWN,
    Key,
    Start,
    _group,
    _key,
    _quoted,
    _select,
    _shown,
    _veids,
    classes_expr,
    matchers,
    quotas_expr,
)
from .sums import Sums


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
        found = self.client.query(classes_expr(self.inner), at)
        return {labels["class"] for labels, _ in found if "class" in labels} or None

    def quotas(self, at: datetime) -> dict[tuple[str, str], int]:
        return {
            (labels.get("veid", ""), labels.get("direction", "")): int(value)
            for labels, value in self.client.query(quotas_expr(self.inner), at)
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
        periods = zip(cuts, cuts[1:])
        if self.percentile is None and step == "hour":
            # Many short periods: the server's sums, and the exact engine where they cannot be trusted.
            for found in Sums(self, classes, veids).rows(cuts):
                yield from found
            return
        rates = None if self.percentile is None else Rates(self, self.percentile)
        for (t0, t1), (traffic, unknown, starts) in zip(periods, self.traffic(cuts, veids)):
            counted = classes if classes is not None else self.classes(t1)
            found = rows(self._stamp(t0), self._stamp(t1), traffic, counted, self.quotas(t1), veids, unknown)
            if rates is None:
                yield from found
                continue
            bps = rates.of(starts, counted, veids, t0, t1)
            yield from [row._replace(percentile_bps=bps.get((row.veid, row.direction), 0)) for row in found]

    def exactly(
        self, t0: datetime, t1: datetime, only: set[str], veids: Optional[set[str]]
    ) -> tuple[dict[SeriesUse, tuple[int, int]], set[SeriesUse]]:
        """The traffic of the containers only in [t0, t1), from the exact engine series by series (the
        periods where the server's sums cannot be trusted)."""
        found: dict[SeriesUse, tuple[int, int]] = {}
        unknown: set[SeriesUse] = set()
        for batch in _veids(only):
            part = Report(self.client, None, None, self.cycle)
            part.inner = ", ".join(p for p in (self.inner, batch) if p)
            traffic, missing, _ = next(part.traffic([t0, t1], veids))
            found.update(traffic)
            unknown |= missing
            self.warnings += part.warnings
        return found, unknown

    def _stamp(self, t: datetime) -> str:
        return stamp(t, self.cycle.where)


__all__ = ["Report", "Row", "ServerError"]
