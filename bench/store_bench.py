"""The accounting of a busy read, with and without numpy (the question of issue 15, item 1).

    python bench/store_bench.py [--containers 10000] [--rounds 20]

A read of 4 counters per container where every counter changed since the
read before (the busy scrape): the store's own step (``update_columns``, pure
Python over integer arrays) against the same arithmetic in numpy (growth,
resets to the full value, totals added per series with ``np.add.at``), from
the same Python lists of raw values, conversion included.  Prints the median
of --rounds of each, CPU time next to wall time.  numpy is not a dependency:
without it, only the store's figure is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vz_traffic_exporter.accounting import Accumulator  # noqa: E402


def timed(step: Callable[[], Any], rounds: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def show(what: str, figures: tuple[float, float], base: tuple[float, float]) -> None:
    wall, cpu = (1e3 * (a - b) for a, b in zip(figures, base))
    print(f"  {what:<20} wall {wall:7.1f} ms  CPU {cpu:7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    n = 4 * args.containers
    counters = [
        ("ipset", d, k, f"198.18.{i // 256}.{i % 256}")
        for i in range(args.containers)
        for d in ("in", "out")
        for k in (0, 1)
    ]
    series = [("ip", str(1000 + i // 4), c[3], str(c[2]), c[1]) for i, c in enumerate(counters)]
    epochs = [1] * n
    store = Accumulator()
    packets, nbytes = [10] * n, [1000] * n
    store.update_columns("bench", counters, series, packets, nbytes, epochs)
    state = {"p": packets, "b": nbytes}

    def busy_store() -> None:
        state["p"] = [p + 1 for p in state["p"]]
        state["b"] = [b + 64 for b in state["b"]]
        store.update_columns("bench", counters, series, state["p"], state["b"], epochs)

    def lists_only() -> None:  # what both pay to have the new values as lists
        state["p"] = [p + 1 for p in state["p"]]
        state["b"] = [b + 64 for b in state["b"]]

    base = timed(lists_only, args.rounds)
    ours = timed(busy_store, args.rounds)
    print(f"{n} counters, every one changed; median of {args.rounds} (new values as lists not counted)")
    show("store (pure Python)", ours, base)
    try:
        import numpy as np
    except ImportError:
        print("  numpy: not installed here")
        return 0
    old_p = np.array(packets, dtype=np.uint64)
    old_b = np.array(nbytes, dtype=np.uint64)
    slots = np.arange(n, dtype=np.int64)
    totals_p = np.zeros(n, dtype=np.uint64)
    totals_b = np.zeros(n, dtype=np.uint64)
    state["p"], state["b"] = packets, nbytes

    def busy_numpy() -> None:
        state["p"] = [p + 1 for p in state["p"]]
        state["b"] = [b + 64 for b in state["b"]]
        p = np.array(state["p"], dtype=np.uint64)
        b = np.array(state["b"], dtype=np.uint64)
        reset = (p < old_p) | (b < old_b)
        dp = np.where(reset, p, p - old_p)
        db = np.where(reset, b, b - old_b)
        grew = (dp | db) != 0
        np.add.at(totals_p, slots[grew], dp[grew])
        np.add.at(totals_b, slots[grew], db[grew])
        old_p[:], old_b[:] = p, b

    theirs = timed(busy_numpy, args.rounds)
    show(f"numpy {np.__version__}", theirs, base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
