"""The slot store against a reference accumulator kept here: the same reads, the same totals.

The reference is the accounting rule written as plainly as it can be (a
dictionary per source, one step per counter); the store under test keeps
integer arrays and passes over what did not change.  Seeded sequences of
reads cover a first read, idle reads, busy and partial growth, resets,
epoch changes, moves between series, 32-bit wraps and the value a saturated
count stops at, counters that come, go, come twice or change places,
restarts from the state file, and reads given as observations or as columns.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any, Optional

import pytest

from vz_traffic_exporter.accounting import SATURATED, Accumulator, Observation
from vz_traffic_exporter.model import SeriesKey

Row = tuple[tuple[str, int], Optional[SeriesKey], int, int, Optional[int]]  # counter, series, p, b, epoch
SERIES: list[Optional[SeriesKey]] = [("ip", str(100 + i), f"192.0.2.{i}", "1", "in") for i in range(6)]
SERIES.append(None)  # an address nobody owns


class Reference:
    def __init__(self) -> None:
        self.last: dict[str, dict[tuple[str, int], tuple[int, int, Optional[int]]]] = {}
        self.missing: dict[str, dict[tuple[str, int], tuple[int, int, Optional[int]]]] = {}  # as last read
        self.totals: dict[SeriesKey, list[int]] = {}
        self.resets: Counter[str] = Counter()

    def read(self, source: str, rows: list[Row], bits: Optional[int]) -> None:
        old = self.last.get(source, {})
        missing = self.missing.setdefault(source, {})
        new: dict[tuple[str, int], tuple[int, int, Optional[int]]] = {}
        for counter, series, p, b, e in rows:
            prev = new.get(counter, old.get(counter, missing.pop(counter, None)))
            if prev is None:
                add = (p, b)
            else:
                pp, pb, pe = prev
                e = pe if e is None else e
                wrapped = p + (1 << bits) - pp if bits else 0
                if pe is not None and pe != e:
                    add, self.resets[source] = (p, b), self.resets[source] + 1
                elif p < pp and wrapped > 0 and pp != SATURATED and b - pb >= 20 * wrapped:
                    add = (wrapped, b - pb)  # the bytes can carry the wrapped packets
                elif p < pp or b < pb:
                    add, self.resets[source] = (p, b), self.resets[source] + 1
                else:
                    add = (p - pp, b - pb)
            new[counter] = (p, b, e)
            if series is not None:
                total = self.totals.setdefault(series, [0, 0])
                total[0] += add[0]
                total[1] += add[1]
        missing.update((counter, values) for counter, values in old.items() if counter not in new)
        self.last[source] = new


class Node:
    """Raw counters as a kernel holds them, changed at random between reads."""

    def __init__(self, rng: random.Random, count: int, bits: Optional[int]) -> None:
        self.rng = rng
        self.bits = bits
        self.values: dict[tuple[str, int], list[Any]] = {
            ("c", i): [rng.randrange(1000), rng.randrange(10**6), rng.choice([None, 1])] for i in range(count)
        }
        self.owner = {key: rng.choice(SERIES) for key in self.values}
        self.order = list(self.values)
        self.next = count
        self.hidden: set[tuple[str, int]] = set()  # missing from the next read only

    def change(self) -> str:
        rng, keys = self.rng, list(self.values)
        kind = rng.choice(["idle", "idle", "busy", "partial", "reset", "epoch", "move", "wrap", "saturate",
                           "come", "go", "shuffle", "miss"])  # fmt: skip
        if kind == "busy":
            chosen = keys
        elif kind in ("partial", "reset", "epoch", "move", "wrap", "saturate"):
            chosen = rng.sample(keys, max(1, len(keys) // 4)) if keys else []
        else:
            chosen = []
        for key in chosen:
            v = self.values[key]
            if kind in ("busy", "partial"):
                grow = rng.randrange(0, 50)
                v[0], v[1] = v[0] + grow, v[1] + grow * rng.randrange(60, 1500)
            elif kind == "reset":
                v[0], v[1] = rng.randrange(0, max(1, v[0])), rng.randrange(0, max(1, v[1]))
            elif kind == "epoch":
                v[2] = (v[2] or 0) + 1
                v[0], v[1] = rng.randrange(0, 2 * v[0] + 1), rng.randrange(0, 2 * v[1] + 1)
            elif kind == "move":
                self.owner[key] = rng.choice(SERIES)
            elif kind == "wrap" and self.bits:
                grow = (1 << self.bits) - rng.randrange(1, 100)  # at 20 bytes a packet or more
                v[0], v[1] = (v[0] + grow) % (1 << self.bits), v[1] + grow * rng.choice([20, 1500])
            elif kind == "saturate" and self.bits:
                v[0] = SATURATED
        if kind == "come":
            key = ("c", self.next)
            self.next += 1
            self.values[key] = [0, 0, None]
            self.owner[key] = self.rng.choice(SERIES)
            self.order.insert(rng.randrange(len(self.order) + 1), key)
        elif kind == "go" and self.order:
            key = self.order.pop(rng.randrange(len(self.order)))
            del self.values[key]
        elif kind == "shuffle":
            rng.shuffle(self.order)
        elif kind == "miss" and self.order:  # a dump that misses some, then shows them again
            self.hidden = set(rng.sample(self.order, max(1, len(self.order) // 5)))
        return kind

    def rows(self) -> list[Row]:
        rows = [(k, self.owner[k], *self.values[k]) for k in self.order if k not in self.hidden]
        self.hidden = set()
        if self.rng.random() < 0.05 and rows:  # a counter twice in one read
            rows.append(rows[self.rng.randrange(len(rows))])
        return rows  # type: ignore[return-value]


def feed(
    acc: Accumulator, source: str, rows: list[Row], bits: Optional[int], columns: bool, now: int
) -> None:
    if columns:
        acc.update_columns(
            source,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            bits,
            now=now,
        )
    else:
        acc.update(source, [Observation(c, s, p, b, bits, e) for c, s, p, b, e in rows], now=now)


@pytest.mark.parametrize("seed", range(40))
def test_the_store_counts_as_the_reference_does(seed: int) -> None:
    rng = random.Random(seed)
    nodes = {"set": Node(rng, rng.randrange(1, 40), None), "narrow": Node(rng, rng.randrange(1, 10), 32)}
    reference, store = Reference(), Accumulator("boot")
    kinds: Counter[str] = Counter()
    for step in range(60):
        source = rng.choice(list(nodes))
        node = nodes[source]
        kinds[node.change()] += 1
        rows = node.rows()
        reference.read(source, rows, node.bits)
        feed(store, source, rows, node.bits, columns=rng.random() < 0.7, now=step)
        if rng.random() < 0.1:  # a restart from the state file
            store = Accumulator.from_state(json.loads(json.dumps(store.to_state())))
        for series, total in reference.totals.items():
            assert store.total(series) == tuple(total), (seed, step, series)
        assert sorted(row[0] for row in store.rows("ip")) == sorted(reference.totals)
        assert store.resets == +reference.resets, (seed, step)
    assert sum(kinds.values()) == 60


def test_an_idle_read_in_the_same_order_changes_nothing_and_costs_no_save() -> None:
    acc = Accumulator()
    keys = [("c", i) for i in range(1000)]
    series = [("ip", str(i), f"198.51.100.{i % 250}", "1", "in") for i in range(1000)]
    acc.update_columns("s", keys, series, list(range(1000)), list(range(0, 100000, 100)), now=1)
    changes, rows = acc.changes, list(acc.rows("ip"))
    acc.update_columns("s", list(keys), list(series), list(range(1000)), list(range(0, 100000, 100)), now=2)
    assert acc.changes == changes and acc.rows("ip") == rows
    grown = list(range(0, 100000, 100))
    grown[7] += 1500
    acc.update_columns("s", keys, series, list(range(1000)), grown, now=3)
    assert acc.total(series[7]) == (7, 700 + 1500) and acc.changes == changes
    assert acc.rows("ip")[[r[0] for r in acc.rows("ip")].index(series[7])][2] == 2200
