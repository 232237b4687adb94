"""The quick way to a report's traffic: the server sums each container's series, the exact engine takes the
periods where a sum cannot be trusted.

For each use of a container's series (its instance, direction and class, per-address or kernel: what
``report`` adds up anyway), the server gives, at every boundary, the sum and the count of its series' last
samples near it (``sum by (...) (last_over_time(x[10m]))``), in range queries over many boundaries at once.
Between two boundaries the use's traffic is the difference of its sums, exactly the sum of its series'
differences, where:

- every series of it with a sample in the period or in the 10 minutes before it has one near both ends,
  and none of them went down there: ``sum(resets(x[period + 10m]) + 1)`` (the count of those series
  plus their drops) equals the count near the end and the count near the start;
- the sum did not go down.

Aggregations only, no set operations on series: the server's work is a few passes over the samples.

A container with a use that fails one of these in a period is summed, for that period, by the exact engine
(:meth:`Report.traffic`, series by series, gaps and resets from the raw samples), as a report of that
period and those containers alone.  Sums of integers are exact in float64 below 2**53 bytes (9 PB) a use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Optional

from .compute import SeriesUse, chosen, use_of
from .selectors import METRICS, SHORT, _key, _select, _veids

if TYPE_CHECKING:
    from . import Report

USE = "job, instance, veid, direction, class"  # the labels of a use
CHUNK = 96  # boundaries asked at once: a container's sums held for this many periods
BATCH = 400  # containers a query asks for
Traffic = dict[SeriesUse, tuple[int, int]]


def chunks(count: int, size: int = CHUNK) -> Iterator[range]:
    """Ranges of boundary indices, each sharing its first with the last of the one before."""
    for first in range(0, count - 1, size):
        yield range(first, min(count, first + size + 1))


class Sums:
    """Per period, the traffic of every use that counts, from server-side sums (see the module)."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def traffic(
        self, cuts: Sequence[datetime], veids: Optional[set[str]] = None
    ) -> Iterator[tuple[Traffic, set[SeriesUse]]]:
        report, client = self.report, self.report.client
        times = [t.timestamp() for t in cuts]
        present = set()
        for metric in METRICS:
            present |= set(client.label_values("veid", _select(metric, report.inner), times[0], times[-1]))
        asked = sorted(present if veids is None else present & veids)
        done = 0
        for span in chunks(len(times)):
            at = [times[i] for i in span]
            found: list[Traffic] = [{} for _ in at[1:]]
            slow: list[set[str]] = [set() for _ in at[1:]]
            for metric, per_ip in METRICS.items():
                for batch in _veids(asked, BATCH):
                    self._period_sums(_select(metric, report.inner, batch), per_ip, at, found, slow)
            for i, (traffic, flagged) in enumerate(zip(found, slow)):
                t0, t1 = cuts[span[i]], cuts[span[i] + 1]
                quick = {use: value for use, value in traffic.items() if use.veid not in flagged}
                counted: Traffic = {use: quick[use] for use in chosen(quick)}
                unknown: set[SeriesUse] = set()
                if flagged:
                    exact, unknown = report.exactly(t0, t1, flagged, veids)
                    counted.update(exact)
                done += 1
                report.progress(done, len(cuts) - 1, f"periods summed ({client.queries} queries)")
                yield counted, unknown

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
