"""The exact arithmetic of a traffic report: pure functions, no I/O.

A series' traffic in a period [t0, t1) is the sum of its increases between
consecutive samples, from its last sample at or before t0 to its last
sample at or before t1; a drop counts the value after it, as the exporter
counts a kernel counter's reset.  Without drops that is value(t1) -
value(t0).  A series with no sample at or before t0 counts from 0 where the
exporter is known to have made it after t0; else from its first sample, and
its row is incomplete.  Traffic between the last sample before t1 and t1 is
seen only at the next sample: it belongs to the next period.

Prometheus stores float64: a value is exact up to 2**53 (9 PB) per series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Optional

Labels = tuple[tuple[str, str], ...]  # a series' labels, sorted
DIRECTIONS = ("in", "out", "total")


def as_bytes(value: float) -> int:
    """A sample's value as the whole number of bytes it is (float64: exact below 2**53)."""
    return round(value)


def increase(
    samples: Sequence[tuple[float, float]], t0: float, t1: float, start: Optional[float] = 0
) -> tuple[int, int]:
    """(bytes, resets) of one series in [t0, t1) from its raw samples (time, value), in time order.

    start: its value at t0 when the samples do not reach back to a sample at or before t0 (0: it was
    made after t0; None: not known, it counts from its first sample in the period).
    """
    at_t0: Optional[int] = None if start is None else as_bytes(start)
    total = resets = 0
    last: Optional[int] = None
    for t, v in samples:
        value = as_bytes(v)
        if t <= t0:
            at_t0 = value
            continue
        if t > t1:
            break
        if last is None:
            last = value if at_t0 is None else at_t0
        if value >= last:
            total += value - last
        else:
            total += value
            resets += 1
        last = value
    return total, resets


def difference(at_t0: Optional[float], at_t1: Optional[float]) -> int:
    """A series' traffic in [t0, t1) from its values at both ends, when it did not go down in between."""
    if at_t1 is None:
        return 0
    return as_bytes(at_t1) - (0 if at_t0 is None else as_bytes(at_t0))


@dataclass(frozen=True)
class SeriesUse:
    """What one series contributes to: a container, a direction, a class, on an instance."""

    veid: str
    direction: str
    klass: str
    instance: str
    per_ip: bool  # a netfilter per-address series (else a kernel per-container one)


def use_of(labels: Mapping[str, str], per_ip: bool) -> SeriesUse:
    return SeriesUse(
        labels.get("veid", ""),
        labels.get("direction", ""),
        labels.get("class", ""),
        f"{labels.get('job', '')}/{labels.get('instance', '')}",
        per_ip,
    )


def chosen(traffic: Mapping[SeriesUse, tuple[int, int]]) -> set[SeriesUse]:
    """The series that count: per (instance, container), the per-address series where any of them moved in
    the period (or the kernel's did not), else the kernel per-container series; never both for the same
    traffic.  A per-address series kept flat (its rules gone, its source failing) hides nothing."""
    moved = {(u.instance, u.veid) for u, (nbytes, _) in traffic.items() if u.per_ip and nbytes}
    kernel = {(u.instance, u.veid) for u, (nbytes, _) in traffic.items() if not u.per_ip and nbytes}
    with_ip = {(u.instance, u.veid) for u in traffic if u.per_ip}
    ip_wins = moved | (with_ip - kernel)
    return {u for u in traffic if u.per_ip == ((u.instance, u.veid) in ip_wins)}


class Row(NamedTuple):
    """One row of a report (a tuple: millions of them are made for a month of hours)."""

    start: str
    end: str
    veid: str
    direction: str
    bytes: int
    quota_bytes: Optional[int]
    resets: int
    complete: bool = True  # False: a series counted in it had no known start
    percentile_bps: Optional[int] = None  # with --percentile: that percentile of its interval rates, bit/s


def rows(
    start: str,
    end: str,
    traffic: Mapping[SeriesUse, tuple[int, int]],
    classes: Optional[set[str]],
    quotas: Mapping[tuple[str, str], int],
    veids: Optional[set[str]] = None,
    incomplete: Iterable[SeriesUse] = (),
) -> list[Row]:
    """The rows of one period: per container, in, out and total, summed over addresses, instances and classes.

    traffic: (bytes, resets) of every series that counts; classes: the classes that count (None: all);
    incomplete: the series among them that had no known start.
    """
    unknown = {
        (u.veid, d)
        for u in incomplete
        if u.direction in ("in", "out") and (classes is None or u.klass in classes)
        for d in (u.direction, "total")
    }
    sums: dict[tuple[str, str], list[int]] = {}
    for use, (nbytes, resets) in traffic.items():
        if use.direction not in ("in", "out") or (classes is not None and use.klass not in classes):
            continue
        if veids is not None and use.veid not in veids:
            continue
        for direction in (use.direction, "total"):
            entry = sums.setdefault((use.veid, direction), [0, 0])
            entry[0] += nbytes
            entry[1] += resets
    for veid in {veid for veid, _ in sums}:
        for direction in DIRECTIONS:
            sums.setdefault((veid, direction), [0, 0])
    order = {d: i for i, d in enumerate(DIRECTIONS)}
    return [
        Row(
            start,
            end,
            veid,
            direction,
            nbytes,
            quotas.get((veid, direction)),
            resets,
            (veid, direction) not in unknown,
        )
        for (veid, direction), (nbytes, resets) in sorted(
            sums.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])
        )
    ]
