"""``make demo``: the exporter on a lab node with live container traffic.

Builds the lab (a node, three containers with IPv4 and IPv6 addresses,
peers in class 0 and class 1), starts traffic both ways, runs the exporter in
the node namespace and forwards a loopback port of this host to it (socat;
the host's firewall and routing are not touched).  Prints a summary every few
seconds until Ctrl-C, then removes everything.  ``--stop`` cleans up a demo
left running elsewhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import yaml
from prometheus_client.parser import text_string_to_metric_families

from .demos import Demo, stop_running
from .lab import (
    CLASS_NETWORKS,
    HERE,
    PEERS,
    SINK_PORT,
    Lab,
    default_containers,
    host_ifname,
    leftover_namespaces,
    run,
)
from .vz9 import nft_script

ROOT = HERE.parent
STATE = ROOT / ".demo"
PREFIX = "vzdemo-"
EXPORTER_PORT = 10057


def _config(lab: Lab) -> Path:
    STATE.mkdir(exist_ok=True)
    path = STATE / "config.yaml"
    data = {
        "containers": {
            "static": [{"veid": ct.veid, "name": ct.name, "ips": [ct.ipv4, ct.ipv6]} for ct in lab.containers]
        },
        "network_classes": [
            {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
            {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
        ],
        "netfilter": {"backend": "iptables", "manage_rules": True, "host_traffic": True},
        "kernel": {"nft_counters": True, "interfaces": True},
        "state": {"poll_interval": "5s", "file": str(STATE / "state.json")},
    }
    path.write_text("# written by make demo\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def _start_traffic(lab: Lab) -> None:
    traffic = str(HERE / "traffic.py")
    for ct in lab.containers:
        pairs = [f"{ct.ipv4}>{PEERS[p][0]}" for p in ("peering", "world")]
        pairs += [f"{ct.ipv6}>{PEERS[p][1]}" for p in ("peering", "world")]
        lab.spawn(ct.ns, sys.executable, traffic, "loop", str(SINK_PORT), "0.5", "400", *pairs)
    pairs = [f"{PEERS[p][0]}>{ct.ipv4}" for ct in lab.containers for p in ("peering", "world")]
    pairs += [f"{PEERS[p][1]}>{ct.ipv6}" for ct in lab.containers for p in ("peering", "world")]
    lab.spawn(lab.peer, sys.executable, traffic, "loop", str(SINK_PORT), "0.5", "800", *pairs)


def _install_vz9_layout(lab: Lab) -> None:
    """The Virtuozzo 9 per-container nft accounting tables, so nft_counters has data."""
    for ct in lab.containers:
        script = nft_script(ct.veid, host_ifname(ct), "vpeer", [ct.ipv4, ct.ipv6], {1: CLASS_NETWORKS[1]})
        lab.ns(lab.node, "nft", "-f", "-", stdin=script)


SOURCES = {  # metric -> the column it feeds
    "vz_traffic_ip_bytes_total": "iptables",
    "vz_traffic_container_bytes_total": "nft",
    "vz_traffic_interface_bytes_total": "veth",
}


def _summary(text: str) -> dict[tuple[str, str, str, str], float]:
    """Bytes by (column, veid, class, direction); interfaces have class "-"."""
    totals: dict[tuple[str, str, str, str], float] = defaultdict(float)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            column = SOURCES.get(s.name)
            if column:
                klass = s.labels.get("class", "-")
                totals[(column, s.labels["veid"], klass, s.labels["direction"])] += s.value
    return totals


def _print_summary(totals: dict[tuple[str, str, str, str], float], veids: list[str]) -> None:
    print(f"{'veid':>6} {'class':>5} {'source':>8} {'in bytes':>12} {'out bytes':>12}")
    for veid in veids:
        for column, klass in (("iptables", "0"), ("iptables", "1"), ("nft", "1"), ("veth", "-")):
            print(
                f"{veid:>6} {klass:>5} {column:>8} {totals[(column, veid, klass, 'in')]:>12.0f} "
                f"{totals[(column, veid, klass, 'out')]:>12.0f}"
            )
    sys.stdout.flush()


def stop() -> None:
    leftovers = leftover_namespaces(PREFIX)  # counted before a running demo removes its own
    stop_running(STATE, Lab(PREFIX, default_containers(PREFIX)).destroy)
    print(f"demo stopped ({len(leftovers)} namespaces removed)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop", action="store_true", help="remove a demo left running")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    parser.add_argument("--interval", type=float, default=5, help="seconds between summaries")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    if args.stop:
        stop()
        return 0
    if leftover_namespaces(PREFIX):
        print("a demo is already running (make demo-stop removes it)", file=sys.stderr)
        return 1

    lab = Lab(PREFIX)
    demo = Demo(STATE)
    demo.start()
    (STATE / "state.json").unlink(missing_ok=True)  # each demo starts from zero
    try:
        print("building the lab: node, containers 101-103, peers ...")
        lab.build(default_containers(PREFIX))
        config = _config(lab)
        _install_vz9_layout(lab)
        _start_traffic(lab)
        exporter_log = open(STATE / "exporter.log", "w")  # noqa: SIM115
        lab.spawn(
            lab.node,
            sys.executable,
            "-m",
            "vz_traffic_exporter",
            "--config",
            str(config),
            f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
            stdout=exporter_log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )
        url = demo.forward(lab.node, f"TCP\\:127.0.0.1\\:{EXPORTER_PORT}", EXPORTER_PORT)
        if url:
            print(f"\nmetrics:   curl -s {url}/metrics")
        print(f"or:        ip netns exec {lab.node} curl -s http://127.0.0.1:{EXPORTER_PORT}/metrics")
        print(f"rules:     ip netns exec {lab.node} iptables-save -c | grep VZTRAFFIC")
        print(f"config:    {config}   log: {STATE / 'exporter.log'}")
        print("stop:      Ctrl-C (or make demo-stop)\n")

        started = time.monotonic()
        veids = [ct.veid for ct in lab.containers]
        reported = False
        next_summary = started + 2
        while not demo.stopping:
            if args.duration and time.monotonic() - started > args.duration:
                break
            if time.monotonic() < next_summary:
                time.sleep(0.2)
                continue
            next_summary += args.interval
            try:
                body = run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        lab.node,
                        sys.executable,
                        "-c",
                        "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                        f"'http://127.0.0.1:{EXPORTER_PORT}/metrics',timeout=5).read().decode())",
                    ],
                )
            except RuntimeError:
                print("waiting for the exporter ...")
                continue
            totals = _summary(body)
            print(f"--- {time.monotonic() - started:.0f}s: bytes by container, class and direction")
            _print_summary(totals, veids)
            wanted = [("iptables", "0"), ("iptables", "1"), ("nft", "1"), ("veth", "-")]
            if not reported and all(
                totals[(col, v, k, d)] > 0 for v in veids for col, k in wanted for d in ("in", "out")
            ):
                reported = True
                print(
                    f"every container shows traffic in both directions and both classes, "
                    f"in its nft counters and on its veth "
                    f"after {time.monotonic() - started:.0f}s"
                )
        return 0 if reported else 1
    finally:
        print("\nremoving the lab ...")
        demo.end(lab.destroy)
        print("done")


if __name__ == "__main__":
    sys.exit(main())
