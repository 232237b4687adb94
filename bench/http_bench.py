"""The HTTP server under hostile load, on loopback: idle and trickling connections held while clients scrape.

    python bench/http_bench.py [--seconds 60] [--scrapers 50] [--idle 100] [--tricklers 100]

Starts ``vz-traffic-exporter serve`` on 127.0.0.1 with netfilter and the
kernel sources off and 1,000 static containers (documentation addresses; no
traffic leaves loopback), so the body is a real exposition of 1,000
container info lines.  Then:

- holds ``--idle`` connections that send nothing, and ``--tricklers`` that
  send one byte of a request every 5 s; each is opened again when the server
  closes it;
- runs ``--scrapers`` threads that scrape /metrics back to back for
  ``--seconds``;
- reports every scrape's status, p50, p99 and maximum latency, and the
  server's RSS and open file descriptors before and after, and how long
  the idle and trickling connections were kept open.

docs/web-config.md keeps the figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_figures(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a process."""
    with open(f"/proc/{pid}/status") as handle:
        rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def scrape(port: int) -> tuple[str, float]:
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(REQUEST)
            answer = b""
            while chunk := conn.recv(1 << 16):
                answer += chunk
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    except OSError as err:
        status = type(err).__name__
    return status, time.monotonic() - start


def hold(port: int, trickle: bool, stop: threading.Event, kept: list[float]) -> None:
    """One hostile client: connect, then say nothing or one byte every 5 s; again when closed.

    kept: how long each connection lasted until the server closed it (seen at once: select).
    """
    while not stop.is_set():
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            time.sleep(0.1)
            continue
        opened = time.monotonic()
        closed = False
        with conn:
            pending = list(REQUEST[:-2]) if trickle else []  # never the final empty line
            next_byte = opened + 5
            while not stop.is_set() and not closed:
                readable, _, _ = select.select(
                    [conn], [], [], max(0.0, min(1.0, next_byte - time.monotonic()))
                )
                if readable:
                    try:
                        closed = conn.recv(1) == b""
                    except OSError:
                        closed = True
                elif pending and time.monotonic() >= next_byte:
                    try:
                        conn.sendall(bytes([pending.pop(0)]))
                    except OSError:
                        closed = True
                    next_byte += 5
        if closed:
            kept.append(time.monotonic() - opened)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--tricklers", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vzt-http-bench-") as tmp:
        config = Path(tmp) / "config.yaml"
        statics = "\n".join(
            f"    - {{veid: '{1000 + i}', name: ct{i}, ips: [192.0.2.{i % 250 + 1}]}}"
            if i < 250
            else f"    - {{veid: '{1000 + i}', name: ct{i}}}"
            for i in range(1000)
        )
        config.write_text(
            f"containers:\n  discovery: [static]\n  static:\n{statics}\n"
            "netfilter: {backend: 'off'}\n"
            "kernel: {venetstat: false, vznetstat: false, nft_counters: false, interfaces: false}\n"
            f"state: {{file: {tmp}/state.json, poll_interval: 30s}}\n"
        )
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "vz_traffic_exporter", "--config", str(config),
             f"--web.listen-address=127.0.0.1:{port}",
             "--path.procfs=/nonexistent", "--path.sysfs=/nonexistent"],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while scrape(port)[0] != "200":
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the exporter did not start")
                time.sleep(0.1)
            before = proc_figures(server.pid)
            stop = threading.Event()
            kept: dict[str, list[float]] = {"idle": [], "trickling": []}
            holders = [
                threading.Thread(
                    target=hold, args=(port, trickle, stop, kept["trickling" if trickle else "idle"])
                )
                for trickle, count in ((False, args.idle), (True, args.tricklers))
                for _ in range(count)
            ]
            for thread in holders:
                thread.start()
            time.sleep(1)
            results: list[tuple[str, float]] = []
            end = time.monotonic() + args.seconds

            def scraper() -> None:
                while time.monotonic() < end:
                    results.append(scrape(port))

            scrapers = [threading.Thread(target=scraper) for _ in range(args.scrapers)]
            for thread in scrapers:
                thread.start()
            for thread in scrapers:
                thread.join()
            during = proc_figures(server.pid)
            stop.set()
            for thread in holders:
                thread.join(15)
            time.sleep(1)
            after = proc_figures(server.pid)
        finally:
            server.terminate()
            _, log = server.communicate(timeout=30)
    statuses = collections.Counter(status for status, _ in results)
    latencies = sorted(t for _, t in results)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(f"{len(results)} scrapes in {args.seconds:g} s by {args.scrapers} clients, "
          f"with {args.idle} idle and {args.tricklers} trickling connections held")  # fmt: skip
    print("statuses: " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())))
    print(f"latency: p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    for kind, times in kept.items():
        if times:
            print(
                f"{kind} connections closed by the server after: max {max(times):.1f} s ({len(times)} closed)"
            )
    print(f"server RSS / open fds: before {before[0]:.1f} MiB / {before[1]}, "
          f"under load {during[0]:.1f} MiB / {during[1]}, after {after[0]:.1f} MiB / {after[1]}")  # fmt: skip
    lines = log.splitlines()
    loose = [line for line in lines if not line.startswith("ts=")]
    print(f"server log: {len(lines)} lines, {len(loose)} not logfmt")
    return 0 if set(statuses) == {"200"} and not loose else 1


if __name__ == "__main__":
    sys.exit(main())
