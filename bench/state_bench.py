"""State file save and load at scale, measured side by side in one run.

    python bench/state_bench.py [--containers 10000] [--repeat 5]

Builds the accumulator of a node with N containers x 2 IPv4 addresses x 2
classes x 2 directions (addresses from the benchmarking range 198.18.0.0/15;
no traffic is sent anywhere), then times, best of --repeat:

- one accounting step over every counter (what each poll does anyway);
- a save (JSON, fsync, rename) and a load (read, parse, rebuild);
- the JSON encoding alone, in memory: the part of a save that is not I/O;
- and the memory the accumulator holds (tracemalloc).

Prints the figures and their ratios; docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.state import StateFile

BASE = ipaddress.IPv4Address("198.18.0.0")


def observations(containers: int, scale: int) -> list[Observation]:
    out = []
    for n in range(containers):
        veid = str(100 + n)
        for k in range(2):
            ip = str(BASE + 2 * n + k)
            for klass in (0, 1):
                for direction in ("in", "out"):
                    counter = ("managed", direction, klass, ip)
                    series = ("ip", veid, ip, str(klass), direction)
                    packets = scale * (n + 1) * (k + 2) * (klass + 1)
                    out.append(
                        Observation(counter, series, packets, packets * 1400, epoch=1795318703035392288)
                    )
    return out


def side_by_side(repeat: int, **steps: Callable[[], object]) -> dict[str, float]:
    """Best time of each step, the steps interleaved in every round so that they share conditions."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            gc.collect()
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    first = observations(args.containers, 1)
    tracemalloc.start()
    acc = Accumulator("6a0c55b4-5e4c-4d8e-8e8c-000000000001")
    acc.update("iptables", first)
    held = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    reads = [observations(args.containers, s) for s in range(2, 2 + args.repeat)]
    series = len(reads[0])

    def update() -> None:
        acc.update("iptables", reads.pop())

    with tempfile.TemporaryDirectory(prefix="vzt-bench-") as tmp:
        state = StateFile(os.path.join(tmp, "state.json"))
        state.save(acc)

        def encode() -> None:
            json.dumps(acc.to_state(), separators=(",", ":"))

        t = side_by_side(
            args.repeat, update=update, save=lambda: state.save(acc), load=state.load, encode=encode
        )
        size = os.path.getsize(state.path)
        loaded = state.load()
        assert loaded is not None and loaded.to_state() == acc.to_state()
    t_update, t_save, t_load, t_encode = t["update"], t["save"], t["load"], t["encode"]

    print(
        f"state of {args.containers} containers: {series} series and {series} counters, {size / 1e6:.1f} MB"
    )
    print(f"{'step':<34}{'ms':>9}{'ratio':>24}")
    print(f"{'accounting step (one poll)':<34}{t_update * 1e3:>9.1f}{'1.00 x step':>24}")
    print(f"{'save (json, fsync, rename)':<34}{t_save * 1e3:>9.1f}{t_save / t_update:>13.2f} x step")
    print(f"{'load (read, parse, rebuild)':<34}{t_load * 1e3:>9.1f}{t_load / t_update:>13.2f} x step")
    print(f"{'encoding alone (in memory)':<34}{t_encode * 1e3:>9.1f}{t_save / t_encode:>13.2f} save/encoding")
    print(f"save per 30 s poll interval: {t_save / 30 * 100:.2f} % of one core")
    print(f"memory held by the accumulator: {held:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
