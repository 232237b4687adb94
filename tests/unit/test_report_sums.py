"""report --step hour: a span's sums give, period by period, the rows the exact rule gives for the same
traffic (compute.chosen and compute.rows), whatever the mix of kinds, classes and directions."""

from __future__ import annotations

import random
from typing import Optional

import pytest

from vz_traffic_exporter.report.compute import Row, SeriesUse, chosen, rows
from vz_traffic_exporter.report.sums import Group, Span, Sums

PERIODS = 6


class _Report:
    client = None


def _sums(veids: Optional[set[str]]) -> Sums:
    return Sums(_Report(), None, veids)  # type: ignore[arg-type]


def _history(seed: int, per_class: bool) -> tuple[list[Group], list[Optional[frozenset[str]]]]:
    """Random groups: containers on one or two instances, per-address, kernel or both, classes 1 and 2,
    in, out and another direction, some flat in some periods."""
    rng = random.Random(seed)
    groups = []
    for veid in map(str, range(100, 100 + rng.randint(3, 12))):
        for instance in rng.sample(["j/a", "j/b"], rng.randint(1, 2)):
            for per_ip in rng.sample([True, False], rng.randint(1, 2)):
                for direction in ("in", "out", "other"):
                    for klass in ("1", "2") if per_class else ("",):
                        if rng.random() < 0.3:
                            continue
                        value, values = rng.randint(0, 10**12), []
                        for _ in range(PERIODS + 1):
                            values.append(value)
                            value += rng.choice([0, 0, rng.randint(1, 10**9)])
                        groups.append(Group(SeriesUse(veid, direction, klass, instance, per_ip), values))
    rng_classes: list[Optional[frozenset[str]]] = [
        rng.choice([None, frozenset({"1"}), frozenset({"2"}), frozenset({"1", "2"})]) for _ in range(PERIODS)
    ]
    return groups, rng_classes if per_class else [None] * PERIODS


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("per_class", [True, False])
def test_a_span_bills_as_the_exact_rule(seed: int, per_class: bool) -> None:
    groups, classes = _history(seed, per_class)
    veids = None if seed % 3 else {g.use.veid for g in groups[::2]}
    doubtful = {groups[0].use.veid} if seed % 4 == 0 else set()
    span = Span(
        [3600.0 * i for i in range(PERIODS + 1)], classes, [{}] * PERIODS, per_class, groups, doubtful
    )
    quick = _sums(veids)._quick(span)
    for i in range(PERIODS):
        traffic = {g.use: (g.values[i + 1] - g.values[i], 0) for g in groups if g.use.veid not in doubtful}
        counted = {use: traffic[use] for use in chosen(traffic)}
        c = classes[i]
        expected = rows("s", "e", counted, None if c is None else set(c), {}, veids)
        got = [
            Row("s", "e", veid, direction, nbytes, None, 0)
            for veid, (nbytes_in, nbytes_out) in sorted(quick[i].items())
            for direction, nbytes in (
                ("in", nbytes_in),
                ("out", nbytes_out),
                ("total", nbytes_in + nbytes_out),
            )
        ]
        assert got == expected, (seed, i)
