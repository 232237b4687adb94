"""The quick way to a report's hours: the server sums each container's series, the exact engine takes the
periods where a sum cannot be trusted.

A report of many short periods is read in spans of SPAN periods.  For each span the server gives:

- at every boundary, the sum of the last samples near it (``last_over_time(x[10m])``) of each container's
  series per instance and direction, over the classes that count (per class too, where the classes change
  within the span, or where both per-address and kernel series would need them); one range query;
- the containers it cannot vouch for: those where, at some boundary, the number of series near it is not
  the number of series with a sample in the span (or in the 10 minutes before it) plus their drops there
  (``sum(resets(x[span + 10m]) + 1)`` at its end).  Where they are equal at every boundary, every series
  with a sample in the span is near each boundary and none went down in it: the difference of two sums
  is, to the byte, the sum of the series' differences, which is what the exact engine adds up.  A range
  query of the counts near the boundaries and an instant one of the counts in the span, beside the sums.

A container the span check cannot vouch for is checked period by period, series by series (:class:`Precise`),
and the periods that still fail are summed by the exact engine (:meth:`Report.traffic`: gaps and resets from
the raw samples).  The per-address and kernel series of a container are chosen as :func:`.compute.chosen`
does, period by period.  Sums of integers are exact in float64 below 2**53 bytes (9 PB) a container.

While a span is summed and written, the next one is asked for: the server works while the report writes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from operator import sub
from typing import TYPE_CHECKING, NamedTuple, Optional

from .compute import Row, SeriesUse, chosen, rows, use_of
from .selectors import METRICS, SHORT, _key, _select, _veids, alternatives, classes_expr, quotas_expr

if TYPE_CHECKING:
    from . import Report

USE = "job, instance, veid, direction, class"  # the labels of a use, as compute.SeriesUse has them
PAIR = "job, instance, veid, direction"  # a container's series on an instance, one direction
SPAN = 24  # periods asked, checked and held at once
BATCH = 400  # containers a query names, where the report is of some containers
Traffic = dict[SeriesUse, tuple[int, int]]
Classes = Optional[frozenset[str]]  # the classes that count in a period (None: all)


def _row(cells: tuple[str, str, str, str, int, Optional[int], int, bool, None]) -> Row:
    """A Row of all its fields, made as the tuple it is (a third of the time Row() takes)."""
    return tuple.__new__(Row, cells)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def chunks(count: int, size: int = SPAN) -> Iterator[range]:
    """Ranges of boundary indices, each sharing its first with the last of the one before."""
    for first in range(0, count - 1, size):
        yield range(first, min(count, first + size + 1))


class Group(NamedTuple):
    """One summed series of the server's answer: a container's series on an instance in one direction (and
    one class, where it is asked per class), of one kind, with its sum at each boundary of the span."""

    use: SeriesUse  # its klass is "" where the classes are summed by the server
    values: list[int]


class Span(NamedTuple):
    """What the server said of one span."""

    at: list[float]  # its boundaries
    classes: list[Classes]  # per period
    quotas: list[dict[tuple[str, str], int]]  # per period
    per_class: bool  # the groups are per class (else the server summed the classes that count)
    groups: list[Group]
    doubtful: set[str]  # containers the span's check could not vouch for


class Sums:
    """The rows of a report of many short periods, span after span (see the module)."""

    def __init__(self, report: Report, classes: Optional[set[str]], veids: Optional[set[str]]) -> None:
        self.report, self.client = report, report.client
        self.classes: Classes = None if classes is None else frozenset(classes)
        self.veids = veids
        self.extras = [""]  # the containers a query names ("": all)
        self.both = False  # per-address and kernel series both there: choosing needs every class

    def rows(self, cuts: Sequence[datetime]) -> Iterator[list[Row]]:
        """Per period, in order, its rows."""
        report, times = self.report, [t.timestamp() for t in cuts]
        present = {}
        for metric in METRICS:
            names = self.client.label_values("veid", _select(metric, report.inner), times[0], times[-1])
            present[metric] = set(names) if self.veids is None else set(names) & self.veids
        self.both = all(present.values())
        if self.veids is not None:
            self.extras = list(_veids(set().union(*present.values()), BATCH)) or ['veid=~""']
        spans = list(chunks(len(times)))
        # Millions of rows and decoded numbers, none in a reference cycle: the cyclic collector would scan
        # them again and again (two thirds of the time a row takes).  It is back once the rows are written.
        collecting = gc.isenabled()
        gc.disable()
        try:
            yield from self._spans(cuts, times, spans)
        finally:
            if collecting:
                gc.enable()

    def _spans(self, cuts: Sequence[datetime], times: list[float], spans: list[range]) -> Iterator[list[Row]]:
        report, done = self.report, 0
        # One thread asks for the next span's sums while this one is written, another checks it meanwhile:
        # the server's two queries at a time, the report's own work beside them.
        with ThreadPoolExecutor(1, "report-ahead") as pool, ThreadPoolExecutor(1, "report-check") as side:
            ahead: Optional[Future[Span]] = pool.submit(self._ask, [times[i] for i in spans[0]], side)
            while ahead is not None:
                span = ahead.result()
                ahead = pool.submit(self._ask, [times[i] for i in spans[1]], side) if spans[1:] else None
                first = spans.pop(0)[0]
                for found in self._rows(span, cuts[first : first + len(span.at)]):
                    done += 1
                    report.progress(done, len(cuts) - 1, f"periods summed ({self.client.queries} queries)")
                    yield found

    def _ask(self, at: list[float], side: ThreadPoolExecutor) -> Span:
        """One span's queries (in the thread that asks ahead)."""
        report, client = self.report, self.client
        classes: list[Classes] = [self.classes] * (len(at) - 1)
        if self.classes is None:
            known: list[set[str]] = [set() for _ in at[1:]]
            for labels, points in client.grid(classes_expr(report.inner), at[1:]):
                for i in points:
                    known[i].add(labels.get("class", ""))
            classes = [frozenset(c - {""}) or None for c in known]
        quotas: list[dict[tuple[str, str], int]] = [{} for _ in at[1:]]
        for labels, points in client.grid(quotas_expr(report.inner), at[1:]):
            for i, value in points.items():
                quotas[i][(labels.get("veid", ""), labels.get("direction", ""))] = int(value)
        counted = classes[0]
        per_class = len(set(classes)) > 1 or (counted is not None and self.both)
        by, only = USE, ""
        if not per_class:
            by, only = PAIR, "" if counted is None else f'class=~"{alternatives(sorted(counted))}"'
        groups: list[Group] = []
        doubtful: set[str] = set()
        checks = [side.submit(self._doubtful, extra, at) for extra in self.extras]  # at the same time
        for extra in self.extras:
            for metric, per_ip in METRICS.items():
                selected = _select(metric, report.inner, ", ".join(p for p in (extra, only) if p))
                for labels, points in client.grid(
                    f"sum by ({by}) (last_over_time({selected}[{SHORT}s]))", at
                ):
                    use = use_of(labels, per_ip)
                    if len(points) != len(at):  # not near every boundary: the check would say so too
                        doubtful.add(use.veid)
                    else:
                        groups.append(Group(use, [round(points[i]) for i in range(len(at))]))
        for check in checks:
            doubtful |= check.result()
        return Span(at, classes, quotas, per_class, groups, doubtful)

    def _doubtful(self, extra: str, at: list[float]) -> set[str]:
        """The containers of which some series with a sample in the span, or in the 10 minutes before it, is
        not near one of its boundaries, or went down (see the module)."""
        names = "|".join(METRICS)
        selected = "{" + ", ".join(p for p in (f'__name__=~"{names}"', self.report.inner, extra) if p) + "}"
        window = round(at[-1] - at[0]) + SHORT
        expr = f"sum by (veid) (resets({selected}[{window}s]) + 1)"
        seen = {labels.get("veid", ""): value for labels, value in self.client.query(expr, _utc(at[-1]))}
        near = {
            labels.get("veid", ""): points
            for labels, points in self.client.grid(
                f"count by (veid) (last_over_time({selected}[{SHORT}s]))", at
            )
        }
        doubtful = seen.keys() - near.keys()  # samples in the span, none near a boundary
        for veid, points in near.items():
            if len(points) != len(at) or any(value != seen.get(veid) for value in points.values()):
                doubtful.add(veid)
        return doubtful

    def _rows(self, span: Span, cuts: Sequence[datetime]) -> Iterator[list[Row]]:
        """The span's rows, period by period."""
        report = self.report
        periods = len(span.at) - 1
        quick = self._quick(span)
        precise = Precise(report).traffic(span.doubtful, span.at) if span.doubtful else None
        for i in range(periods):
            start, end = report._stamp(cuts[i]), report._stamp(cuts[i + 1])
            quotas, counted = span.quotas[i], span.classes[i]
            found: list[Row] = []
            for veid, (nbytes_in, nbytes_out) in sorted(quick[i].items()):
                found += [
                    _row((start, end, veid, "in", nbytes_in, quotas.get((veid, "in")), 0, True, None)),
                    _row((start, end, veid, "out", nbytes_out, quotas.get((veid, "out")), 0, True, None)),
                    _row((start, end, veid, "total", nbytes_in + nbytes_out, quotas.get((veid, "total")), 0,
                          True, None)),
                ]  # fmt: skip
            if precise is not None:
                traffic, slow = precise[0][i], precise[1][i]
                counted_uses: Traffic = {use: traffic[use] for use in chosen(traffic)}
                unknown: set[SeriesUse] = set()
                if slow:
                    exact, unknown = report.exactly(cuts[i], cuts[i + 1], slow, self.veids)
                    counted_uses.update(exact)
                more = rows(start, end, counted_uses, None if counted is None else set(counted), quotas,
                            self.veids, unknown)  # fmt: skip
                if more:
                    found = sorted(found + more, key=lambda row: row.veid)  # stable: in, out, total
            yield found

    def _quick(self, span: Span) -> list[dict[str, list[int]]]:
        """Per period, per container the span could vouch for: [bytes in, bytes out]."""
        periods = len(span.at) - 1
        pairs: dict[tuple[str, str], list[Group]] = {}
        for group in span.groups:
            if group.use.veid not in span.doubtful and (self.veids is None or group.use.veid in self.veids):
                pairs.setdefault((group.use.instance, group.use.veid), []).append(group)
        found: list[dict[str, list[int]]] = [{} for _ in range(periods)]
        for (_, veid), groups in pairs.items():
            diffs = [list(map(sub, g.values[1:], g.values[:-1])) for g in groups]
            wins = _ip_wins(groups, diffs)
            for group, diff in zip(groups, diffs):
                if group.use.direction not in ("in", "out"):
                    continue  # it chose above, and counts in no row
                direction = 0 if group.use.direction == "in" else 1
                for i in range(periods):
                    if wins is not None and wins[i] != group.use.per_ip:
                        continue
                    counted = span.classes[i]
                    if span.per_class and counted is not None and group.use.klass not in counted:
                        continue
                    entry = found[i].get(veid)
                    if entry is None:
                        entry = found[i][veid] = [0, 0]
                    entry[direction] += diff[i]
        return found


def _ip_wins(groups: list[Group], diffs: list[list[int]]) -> Optional[list[bool]]:
    """Per period, whether the per-address series of a container on an instance count (else its kernel
    ones), as :func:`.compute.chosen` says; None where it has one kind only."""
    kinds = {g.use.per_ip for g in groups}
    if len(kinds) < 2:
        return None
    moved, kernel = [False] * len(diffs[0]), [False] * len(diffs[0])
    for group, diff in zip(groups, diffs):
        mine = moved if group.use.per_ip else kernel
        mine[:] = [m or bool(d) for m, d in zip(mine, diff)]
    return [m or not k for m, k in zip(moved, kernel)]


class Precise:
    """Period by period and series by series, the containers a span's check could not vouch for."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def traffic(self, only: set[str], at: list[float]) -> tuple[list[Traffic], list[set[str]]]:
        """Per period, the traffic of each use of the containers only whose sums can be trusted there, and
        the containers that the exact engine must sum."""
        found: list[Traffic] = [{} for _ in at[1:]]
        slow: list[set[str]] = [set() for _ in at[1:]]
        for metric, per_ip in METRICS.items():
            for batch in _veids(only, BATCH):
                self._period_sums(_select(metric, self.report.inner, batch), per_ip, at, found, slow)
        for traffic, flagged in zip(found, slow):
            for use in [use for use in traffic if use.veid in flagged]:
                del traffic[use]
        return found, slow

    def _period_sums(
        self, selected: str, per_ip: bool, at: list[float], found: list[Traffic], slow: list[set[str]]
    ) -> None:
        """Each use's traffic in the periods between the boundaries at, from its sums; the containers of uses
        whose sums cannot be trusted into slow, per period.

        Per use and boundary: the sum and the count of its series near it, and, per period, the series with
        a sample in it or in the 10 minutes before it plus their drops there (``resets() + 1``, summed).
        That is the count near the end and the count near the start only where each series with a sample
        there is near both ends and none went down: then the sums' difference is exact.
        """
        client = self.report.client
        near = f"last_over_time({selected}[{SHORT}s])"
        sums = client.grid(f"sum by ({USE}) ({near})", at)
        counts = {
            _key("", labels)[1]: points for labels, points in client.grid(f"count by ({USE}) ({near})", at)
        }
        seen = {
            _key("", labels)[1]: points
            for labels, points in client.grid_by_step(
                lambda step: f"sum by ({USE}) (resets({selected}[{round(step) + SHORT}s]) + 1)",
                at[1:],
                first_step=at[1] - at[0],
            )
        }
        by_labels = {_key("", labels)[1]: (labels, points) for labels, points in sums}
        for key in seen.keys() - by_labels.keys():  # samples in a period, none near a boundary
            for i in seen[key]:
                slow[i].add(dict(key).get("veid", ""))
        for key, (labels, points) in by_labels.items():
            use = use_of(labels, per_ip)
            count, alive = counts.get(key, {}), seen.get(key, {})
            for i in range(1, len(at)):
                value, start = points.get(i), points.get(i - 1)
                if value is None and start is None and i - 1 not in alive:
                    continue  # no series of it near either end, and none with samples between: nothing
                if (
                    value is None
                    or start is None
                    or value < start
                    or not alive.get(i - 1) == count.get(i) == count.get(i - 1)
                ):
                    slow[i - 1].add(use.veid)
                    continue
                total = found[i - 1].get(use, (0, 0))
                found[i - 1][use] = (total[0] + round(value) - round(start), total[1])
