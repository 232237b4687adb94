"""What one node costs a central store that it remote-writes to (needs root, Prometheus).

    python bench/fleet_bench.py [--containers 10000] [--interval 5] [--seconds 60]

A simulated node: a namespace lab node whose exporter (ipset backend) counts
--containers containers (one IPv4 address each, two classes, so 4 counters
and 8 samples a container; all but one are addresses of the benchmarking
range 198.18.0.0/15 that appear only in sets), scraped every --interval
seconds by a Prometheus agent in the node (the shipped
prometheus/fleet/agent.yml) that remote-writes to a central Prometheus in a
hub namespace (prometheus/fleet/central-push.yml, rules loaded).  Every
counter is set one packet higher before each scrape, so that every sample
is a new value, as on a busy node.  Over --seconds it reads, side by side:

- from the agent: the samples and the compressed bytes it sent
  (prometheus_remote_storage_samples_total, _bytes_total): bytes per sample
  on the wire;
- from the central store: the samples it appended
  (prometheus_tsdb_head_samples_appended_total) and its CPU time
  (/proc/PID/stat, user and system): CPU seconds per second per 1,000
  samples/s; its peak RSS;
- the agent's CPU and RSS the same way.

Then it writes out what a central Prometheus needs for 1,000 nodes of 100
containers at a 30 s scrape.  docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netfilter_bench import bump, cpu_seconds  # noqa: E402  (bench/, on the path as this script's folder)

from netlab.fleet import AGENT_PORT, CENTRAL_PORT, Fleet, wait_for  # noqa: E402
from netlab.lab import CLASS_NETWORKS, run  # noqa: E402

FAKE = ipaddress.IPv4Address("198.18.0.1")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def metrics(ns: str, url: str) -> dict[str, float]:
    """A Prometheus' own counters, summed by name (labels dropped)."""
    code = (
        "import sys, urllib.request\n"
        f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=30).read().decode())\n"
    )
    out: dict[str, float] = {}
    for line in run(["ip", "netns", "exec", ns, sys.executable, "-c", code]).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=5.0, help="the agent's scrape interval, seconds")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measurement")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vzt-fleet-bench-") as tmp:
        fleet = Fleet(f"vzfb{os.getpid() % 1000}-", Path(tmp))
        try:
            fleet.build(count=1, containers=1)
            node = fleet.nodes[0]
            real = node.lab.containers[0]
            static = [{"veid": real.veid, "name": real.name, "ips": [real.ipv4]}]
            static += [{"veid": str(100000 + i), "ips": [str(FAKE + i)]} for i in range(args.containers - 1)]
            config = Path(tmp) / "exporter.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "containers": {"static": static, "discovery": ["static"]},
                        "network_classes": [
                            {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
                            {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
                        ],
                        "netfilter": {"backend": "ipset"},
                        "kernel": {"venetstat": False, "vznetstat": False, "nft_counters": False},
                        "state": {"file": str(Path(tmp) / "state.json"), "poll_interval": "1h"},
                    }
                )
            )
            fleet.start_central(interval="30s")
            fleet.start_exporter(node, config)
            interval = f"{args.interval:g}s"
            fleet.start_agent(node, interval=interval)
            agent_url = f"http://127.0.0.1:{AGENT_PORT}/metrics"
            central_url = f"http://[::1]:{CENTRAL_PORT}/metrics"
            wait_for(
                "the node's series in the central store",
                lambda: bool(fleet.query("count(vz_traffic_ip_bytes_total) > 0")),
                120,
                every=1,
            )
            series = int(float(fleet.query('count({__name__=~"vz_traffic_.*"})')[0]["value"][1]))
            assert node.agent is not None and fleet.centrals.get(False) is not None
            agent_pid, central_pid = node.agent.pid, fleet.centrals[False].pid
            time.sleep(2 * args.interval)  # past the first, larger writes (the series' first samples)
            wal = node.workdir / "agent"

            def reading() -> tuple[dict[str, float], dict[str, float], float, float, float, int]:
                return (
                    metrics(node.lab.node, agent_url),
                    metrics(fleet.hub, central_url),
                    cpu_seconds(agent_pid),
                    cpu_seconds(central_pid),
                    time.monotonic(),
                    size_of(wal),
                )

            before = reading()
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                bump(node.lab, "ipset")
                time.sleep(args.interval)
            after = reading()
            agent_rss, central_rss = peak_rss_mib(agent_pid), peak_rss_mib(central_pid)
        finally:
            fleet.destroy()

    def grew(which: int, name: str) -> float:
        return after[which].get(name, 0.0) - before[which].get(name, 0.0)  # type: ignore[union-attr]

    elapsed = after[4] - before[4]
    sent = grew(0, "prometheus_remote_storage_samples_total")
    wire = grew(0, "prometheus_remote_storage_bytes_total")
    appended = grew(1, "prometheus_tsdb_head_samples_appended_total")
    central_cpu = (after[3] - before[3]) / elapsed
    agent_cpu = (after[2] - before[2]) / elapsed
    rate = sent / elapsed  # samples/s that the node wrote to the store
    per_container = series / args.containers
    print(f"simulated node: {args.containers} containers, {series} series ({per_container:.1f} a container)")
    print(f"agent scrape every {args.interval:g} s, measured over {elapsed:.0f} s")
    print(
        f"samples sent {sent:.0f} ({rate:.0f}/s); appended centrally {appended:.0f} "
        "(with the shipped rules' own results, evaluated every 30 s)"
    )
    print(f"bytes on the wire per sample: {wire / sent:.2f} (snappy-compressed remote write)")
    print(
        f"central CPU (ingest and the rules): {central_cpu:.3f} s/s = "
        f"{1000 * central_cpu / rate:.4f} cores per 1,000 samples/s"
    )
    print(f"agent CPU:   {agent_cpu:.3f} s/s = {1000 * agent_cpu / rate:.4f} cores per 1,000 samples/s")
    print(f"peak RSS: central {central_rss:.0f} MiB, agent {agent_rss:.0f} MiB")
    wal_per_sample = (after[5] - before[5]) / sent
    print(f"agent WAL: {wal_per_sample:.2f} bytes a sample written (uncompressed WAL, the default)")
    nodes, containers, scrape = 1000, 100, 30.0
    fleet_series = nodes * containers * per_container
    fleet_rate = fleet_series / scrape
    cores = fleet_rate / rate * central_cpu
    per_series_kib = central_rss * 1024 / series
    print(
        f"\n{nodes} nodes x {containers} containers at a {scrape:g} s scrape: {fleet_series:,.0f} series, "
        f"{fleet_rate:,.0f} samples/s; central CPU {cores:.2f} cores; "
        f"{fleet_rate * wire / sent / 1e6:.2f} MB/s on the wire; central memory at this run's "
        f"{per_series_kib:.1f} KiB a series: {per_series_kib * fleet_series / 2**20:.1f} GiB"
    )
    node_rate = containers * per_container / scrape
    print(
        f"one node of {containers} containers: {node_rate:.1f} samples/s; its agent's WAL grows "
        f"{node_rate * wal_per_sample * 3600 / 2**20:.1f} MiB an hour while the store is away"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
