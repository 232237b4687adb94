"""The cost of ``report`` against Debian's Prometheus: time, peak memory and queries, at a given scale.

    python bench/report_bench.py [--containers 10000] [--start 2026-10-01] [--hours 744]
                                 [--interval 300] [--step hour]

Writes a history of N containers (two addresses each, 198.18.0.0/15 and
2001:db8::/32 as text only, classes 1 and 2, in and out: eight series a
container, spread over ten instances; quotas for one container in ten) at
one sample per --interval seconds, loads it into Debian's Prometheus with
``promtool tsdb create-blocks-from openmetrics`` one two-hour block at a
time, starts Prometheus on 127.0.0.1 with its default query limits, lets it
compact the blocks as it does a month it scraped (--two-hour-blocks: not), and runs
``report`` over the whole history at --step, as a child process, measuring
its wall time, its CPU time and its peak RSS, and Prometheus's peak RSS.
docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tsdb import BLOCK, backfill, serving  # noqa: E402

V4 = ipaddress.IPv4Address("198.18.0.0")
V6 = ipaddress.IPv6Address("2001:db8::")
INSTANCES = 10
# The report in this process, which then says its own peak memory (VmHWM: ru_maxrss would keep the
# parent's across fork and exec).
MEASURED = (
    "import resource, sys; from vz_traffic_exporter.cli import main; code = main(sys.argv[1:]); "
    "peak = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]; "
    "print(f'peak_rss_kib={peak}', file=sys.stderr); sys.exit(code)"
)


def blocks(containers: int, start: int, end: int, interval: int, counted: list[int]) -> Iterator[str]:
    """One OpenMetrics text per two-hour block of samples at start, start + interval, ... <= end."""
    series: list[tuple[str, int]] = []
    for c in range(containers):
        for ip in (V4 + c, V6 + c):
            for klass in ("1", "2"):
                for direction in ("in", "out"):
                    labels = (
                        f'class="{klass}",direction="{direction}",instance="node-{c % INSTANCES}",ip="{ip}",'
                        f'job="vz-traffic",veid="{1000 + c}"'
                    )
                    series.append(
                        (f"vz_traffic_ip_bytes_total{{{labels}}} ", 1000 + (c * 7 + len(series)) % 500)
                    )
    quotas = [
        f'vz_traffic_quota_bytes{{direction="total",instance="node-{c % INSTANCES}",job="vz-traffic",'
        f'veid="{1000 + c}"}} {10**12} '
        for c in range(0, containers, 10)
    ]
    classes = [
        f'vz_traffic_quota_class_info{{class="{k}",instance="node-{i}",job="vz-traffic"}} 1 '
        for i in range(INSTANCES)
        for k in ("1", "2")
    ]
    for b in range(start // BLOCK * BLOCK, end + 1, BLOCK):
        first = max(0, -(-(b - start) // interval))
        steps = range(first, min((end - start) // interval + 1, -(-(b + BLOCK - start) // interval)))
        stamps = [f"{start + i * interval}\n" for i in steps]
        lines = ["# TYPE vz_traffic_ip_bytes counter\n"]
        for prefix, rate in series:
            lines += [f"{prefix}{rate * i * interval} {t}" for i, t in zip(steps, stamps)]
        lines.append("# TYPE vz_traffic_quota_bytes gauge\n")
        lines += [prefix + t for prefix in quotas for t in stamps]
        lines.append("# TYPE vz_traffic_quota_class_info gauge\n")
        lines += [prefix + t for prefix in classes for t in stamps]
        lines.append("# EOF\n")
        counted[0] += len(stamps) * (len(series) + len(quotas) + len(classes))
        yield "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10000)
    parser.add_argument("--start", default="2026-10-01", help="UTC day the report starts")
    parser.add_argument("--hours", type=int, default=744, help="length of the report (744: October)")
    parser.add_argument("--interval", type=int, default=300, help="s between samples")
    parser.add_argument("--step", default="hour")
    parser.add_argument("--keep", type=Path, help="build the TSDB here, and reuse it if it is there")
    parser.add_argument(
        "--two-hour-blocks",
        action="store_true",
        help="serve the history as promtool wrote it (else compacted first, as a month scraped)",
    )
    args = parser.parse_args()
    begin = datetime.fromisoformat(args.start).replace(tzinfo=timezone.utc)
    finish = begin + timedelta(hours=args.hours)
    with tempfile.TemporaryDirectory(prefix="vzt-report-bench-") as tmp:
        data = (args.keep or Path(tmp)) / "data"
        if not data.exists():
            began = time.monotonic()
            samples = [0]
            history = blocks(
                args.containers,
                int(begin.timestamp()) - 3600,
                int(finish.timestamp()),
                args.interval,
                samples,
            )
            backfill(history, data)
            print(
                f"history: {args.containers} containers, {args.containers * 8} series, {samples[0]} samples, "
                f"loaded in {time.monotonic() - began:.0f} s",
                flush=True,
            )
        with serving(data, timeout=600, compacted=not args.two_hour_blocks) as url:
            server = subprocess.run(
                ["pgrep", "-f", f"storage.tsdb.path={data}"], capture_output=True, text=True
            )
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            report = subprocess.run(
                [sys.executable, "-c", MEASURED, "report", f"--prometheus.url={url}",
                 f"--from={begin.strftime(fmt)}", f"--to={finish.strftime(fmt)}", f"--step={args.step}",
                 "--format=csv", f"--output={Path(tmp) / 'r.csv'}"],
                capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )  # fmt: skip
            wall = time.monotonic() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            hwm = 0
            for pid in server.stdout.split():
                status = Path(f"/proc/{pid}/status")
                if status.exists():
                    hwm = max([hwm, *(int(v) for v in re.findall(r"VmHWM:\s+(\d+)", status.read_text()))])
        if report.returncode != 0:
            print(report.stderr, file=sys.stderr)
            return 1
        rows = sum(1 for _ in (Path(tmp) / "r.csv").open()) - 1
        queries = max(int(q) for q in re.findall(r"\((\d+) queries\)", report.stderr))
        peak = int(re.findall(r"peak_rss_kib=(\d+)", report.stderr)[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        f"report --step {args.step} over {args.hours} hours: {rows} rows, {queries} queries, "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak / 1024:.0f} MiB; "
        f"Prometheus peak RSS {hwm / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
