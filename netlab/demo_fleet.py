"""``make demo-fleet``: three lab nodes pushing to one central Prometheus, with live traffic.

Builds three nodes (each a namespace lab with two containers, its exporter
and a Prometheus agent) and a hub namespace with the central store, which
receives the agents' remote writes and evaluates the shipped rules; the
configurations are the ones in prometheus/fleet/.  Forwards a loopback port
of this host to the central store (socat; the host's firewall and routing
are not touched), prints the URL and queries to try, and reports when every
node's traffic has reached the store.  Ctrl-C (or ``make demo-fleet-stop``
from elsewhere) removes everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import urllib.parse
from typing import Optional

from .demos import Demo, stop_running
from .fleet import CENTRAL_PORT, Fleet, FleetNode
from .lab import HERE, PEERS, SINK_PORT, delete_namespace, leftover_namespaces

ROOT = HERE.parent
STATE = ROOT / ".demo-fleet"
PREFIX = "vzfleet-"
QUERIES = [
    "sum by (instance) (rate(vz_traffic_ip_bytes_total[1m]))",
    "sum by (veid, direction) (vz_traffic_ip_bytes_total)",
    "veid_direction:vz_traffic_quota_bytes:month_to_date",
    'ALERTS{alertname="VzTrafficQuotaExceeded"}',
]


def _start_traffic(node: FleetNode) -> None:
    traffic = str(HERE / "traffic.py")
    lab = node.lab
    for ct in lab.containers:
        pairs = [f"{ct.ipv4}>{PEERS['peering'][0]}", f"{ct.ipv6}>{PEERS['peering'][1]}"]
        lab.spawn(ct.ns, sys.executable, traffic, "loop", str(SINK_PORT), "0.5", "400", *pairs)
    pairs = [f"{PEERS['peering'][0]}>{ct.ipv4}" for ct in lab.containers]
    pairs += [f"{PEERS['peering'][1]}>{ct.ipv6}" for ct in lab.containers]
    lab.spawn(lab.peer, sys.executable, traffic, "loop", str(SINK_PORT), "0.5", "800", *pairs)


def _remove_leftovers() -> None:
    """Whatever a demo killed before its cleanup left: the namespaces and their processes."""
    for ns in leftover_namespaces(PREFIX):
        delete_namespace(ns)


def stop() -> None:
    leftovers = leftover_namespaces(PREFIX)  # counted before a running demo removes its own
    stop_running(STATE, _remove_leftovers)
    print(f"fleet demo stopped ({len(leftovers)} namespaces removed)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop", action="store_true", help="remove a fleet demo left running")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    parser.add_argument(
        "--exit-when-ready", action="store_true", help="stop once every node's traffic reached the store"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    if args.stop:
        stop()
        return 0
    if leftover_namespaces(PREFIX):
        print("a fleet demo is already running (make demo-fleet-stop removes it)", file=sys.stderr)
        return 1
    for tool in ("prometheus", "nft"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (make demo-fleet installs it)", file=sys.stderr)
            return 1

    shutil.rmtree(STATE, ignore_errors=True)  # each demo starts from zero
    demo = Demo(STATE)
    demo.start()
    fleet = Fleet(PREFIX, STATE)
    try:
        print("building the fleet: nodes a, b and c with two containers each, and the central store ...")
        fleet.build()
        fleet.start_central(interval="5s")
        quotas = {"classes": [1], "default": {"total": "10MB"}}
        for node in fleet.nodes:
            fleet.start_exporter(node, fleet.write_config(node, quotas))
            fleet.start_agent(node, interval="5s")
            _start_traffic(node)
        url = demo.forward(fleet.hub, f"TCP6\\:[\\:\\:1]\\:{CENTRAL_PORT}", CENTRAL_PORT)
        if url:
            print(f"\ncentral Prometheus: {url}  (its web UI too)")
        else:
            url = f"http://[::1]:{CENTRAL_PORT}"
            print(f"\ncentral Prometheus: ip netns exec {fleet.hub} curl -s {url}/api/v1/query?query=up")
        print("queries to try:")
        for expr in QUERIES:
            print(f"  {url}/graph?g0.expr={urllib.parse.quote(expr)}")
        print(f"agents: prometheus --enable-feature=agent in each node, configs in {STATE}/node-*/agent.yml")
        print("stop:   Ctrl-C (or make demo-fleet-stop)\n")

        started = time.monotonic()
        reported = False
        while not demo.stopping:
            if args.duration and time.monotonic() - started > args.duration:
                break
            time.sleep(1)
            if reported:
                if args.exit_when_ready:
                    break
                continue
            with contextlib.suppress(RuntimeError, ValueError):
                found = fleet.query('sum by (instance) (vz_traffic_ip_bytes_total{class="1"}) > 0')
                if len(found) == len(fleet.nodes):
                    reported = True
                    by_node = ", ".join(
                        f"{r['metric']['instance']} {float(r['value'][1]):.0f} B" for r in found
                    )
                    print(
                        f"every node's traffic reached the central store after "
                        f"{time.monotonic() - started:.0f}s: {by_node}"
                    )
        return 0 if reported else 1
    finally:
        print("\nremoving the fleet ...")
        demo.end(fleet.destroy)
        print("done")


if __name__ == "__main__":
    sys.exit(main())
