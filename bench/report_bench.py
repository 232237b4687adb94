"""The cost of ``report`` against Debian's Prometheus: time, peak memory and queries, at a given scale.

    python bench/report_bench.py [--containers 1000] [--days 1] [--interval 60] [--step hour]

Writes a history of N containers (one address each, classes 1 and 2, in and
out: four series a container, documentation addresses as text only) at one
sample per --interval, loads it with ``promtool tsdb create-blocks-from
openmetrics``, starts Prometheus on 127.0.0.1 with it, and runs ``report``
over the whole history at --step, as a child process, measuring its wall
time, its CPU time and its peak RSS.  docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ipaddress.IPv4Address("198.18.0.0")
# The report in this process, which then says its own peak memory.
MEASURED = (
    "import resource, sys; from vz_traffic_exporter.cli import main; code = main(sys.argv[1:]); "
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
    "print(f'peak_rss_kib={peak}', file=sys.stderr); sys.exit(code)"
)


def history(path: Path, containers: int, start: float, end: float, interval: int) -> int:
    """OpenMetrics of every container's four series; returns the number of samples."""
    times = [start + i * interval for i in range(int((end - start) // interval) + 1)]
    count = 0
    with path.open("w") as out:
        out.write("# TYPE vz_traffic_ip_bytes counter\n")
        for c in range(containers):
            ip = BASE + c
            for klass in ("1", "2"):
                for direction in ("in", "out"):
                    labels = (
                        f'class="{klass}",direction="{direction}",instance="node-{c % 10}",ip="{ip}",'
                        f'job="vz-traffic",veid="{1000 + c}"'
                    )
                    step = 1000 + (c * 7 + len(klass + direction)) % 500
                    out.writelines(
                        f"vz_traffic_ip_bytes_total{{{labels}}} {step * i} {t:.0f}\n"
                        for i, t in enumerate(times)
                    )
                    count += len(times)
        out.write("# EOF\n")
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--step", default="hour")
    args = parser.parse_args()
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    start = end - timedelta(days=args.days)
    with tempfile.TemporaryDirectory(prefix="vzt-report-bench-") as tmp:
        work = Path(tmp)
        began = time.monotonic()
        samples = history(
            work / "h.om", args.containers, start.timestamp() - 3600, end.timestamp() + 60, args.interval
        )
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "h.om"), str(work / "data")],
            check=True,
            capture_output=True,
        )
        loaded = time.monotonic() - began
        print(f"history: {args.containers} containers, {samples} samples, loaded in {loaded:.0f} s")
        (work / "p.yml").write_text("global: {}\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={work / 'p.yml'}", f"--storage.tsdb.path={work / 'data'}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            report = subprocess.run(
                [sys.executable, "-c", MEASURED, "report", f"--prometheus.url=http://127.0.0.1:{port}",
                 f"--from={start.strftime(fmt)}", f"--to={end.strftime(fmt)}", f"--step={args.step}",
                 "--format=csv", f"--output={work / 'r.csv'}"],
                capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )  # fmt: skip
            wall = time.monotonic() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            prometheus.terminate()
            prometheus.wait(30)
        if report.returncode != 0:
            print(report.stderr, file=sys.stderr)
            return 1
        rows = sum(1 for _ in (work / "r.csv").open()) - 1
        queries = max(int(q) for q in re.findall(r"\((\d+) queries\)", report.stderr))
        peak = int(re.findall(r"peak_rss_kib=(\d+)", report.stderr)[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        f"report --step {args.step} over {args.days} day(s): {rows} rows, {queries} queries, "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
