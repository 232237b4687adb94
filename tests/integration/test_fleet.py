"""A fleet of three lab nodes and one central Prometheus: push (agents, remote write) and pull (file_sd).

Each node is a namespace lab with its own containers, exporter (nftables
backend) and, for the push topology, a Prometheus agent that remote-writes to
the central store in a hub namespace.  The configurations are the shipped
ones (prometheus/fleet/), filled in.  Byte counts are compared with what the
test sent, per container and direction, in class 1 (the quota class).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.fleet import CENTRAL_PORT, VM_PORT, Fleet, FleetNode, wait_for
from netlab.lab import PEERS, LabContainer, leftover_namespaces

pytestmark = [pytest.mark.netns, pytest.mark.slow]

QUOTA = 60_000  # bytes out a month for the container that migrates
PEERING = PEERS["peering"]  # class 1


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    for tool in ("prometheus", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    built = Fleet(f"vztf{os.getpid() % 10000}-", tmp_path)
    try:
        built.build()
        yield built
    finally:
        built.destroy()
        assert leftover_namespaces(built.prefix) == []


class Ledger:
    """What the test sent, per (veid, direction): class-1 bytes at IP level."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, str], int] = {}

    def send(self, node: FleetNode, ct: LabContainer, direction: str, count: int, size: int) -> int:
        for family, ip in enumerate((ct.ipv4, ct.ipv6)):
            if direction == "out":
                nbytes = node.lab.send_udp(ct.ns, ip, PEERING[family], count, size)
            else:
                nbytes = node.lab.send_udp(node.lab.peer, PEERING[family], ip, count, size)
            self.sent[(ct.veid, direction)] = self.sent.get((ct.veid, direction), 0) + nbytes
        return self.sent[(ct.veid, direction)]

    def traffic(self, node: FleetNode, scale: int, skip: str = "") -> None:
        """Both directions, both families, for every container of node but skip."""
        for ct in node.lab.containers:
            if ct.veid == skip:
                continue
            self.send(node, ct, "out", 3 * scale, 300)
            self.send(node, ct, "in", 2 * scale, 500)


def central_bytes(fleet: Fleet, pull: bool = False) -> dict[tuple[str, str], int]:
    """Class-1 bytes per (veid, direction) in a central store, summed over every node and address."""
    result = fleet.query('sum by (veid, direction) (vz_traffic_ip_bytes_total{class="1"})', pull)
    return {(r["metric"]["veid"], r["metric"]["direction"]): int(float(r["value"][1])) for r in result}


def wait_arrived(fleet: Fleet, ledger: Ledger, what: str, timeout: float = 60, pull: bool = False) -> None:
    def arrived() -> bool:
        got = central_bytes(fleet, pull)
        return all(got.get(key) == value for key, value in ledger.sent.items())

    try:
        wait_for(what, arrived, timeout, every=0.5)
    except TimeoutError:
        got = central_bytes(fleet, pull)
        wrong = {key: (got.get(key), value) for key, value in ledger.sent.items() if got.get(key) != value}
        raise AssertionError(f"{what}: (central, sent) differ: {wrong}") from None


def history(fleet: Fleet, count: int) -> None:
    """Wait until count per-instance sums have a minute of history in the push store: the rules count a
    container's growth from its sum a minute earlier (what a series holds at its first sample is not the
    month's)."""
    wait_for(
        "a minute of recorded sums",
        lambda: len(fleet.query("instance_veid_direction:vz_traffic_quota_bytes:sum offset 1m")) >= count,
        150,
        every=1,
    )


def report(fleet: Fleet, start: float, end: float, port: int = CENTRAL_PORT) -> dict[tuple[str, str], int]:
    rfc3339 = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (start, end)]
    out = fleet.hub_run(
        sys.executable, "-m", "vz_traffic_exporter", "report", f"--prometheus.url=http://[::1]:{port}",
        f"--from={rfc3339[0]}", f"--to={rfc3339[1]}", "--format=json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return {(r["veid"], r["direction"]): r["bytes"] for r in json.loads(out.stdout)}


def test_a_fleet_is_exact_pushed_and_pulled_through_a_migration_an_outage_and_a_killed_agent(
    fleet: Fleet,
) -> None:
    a, b, c = fleet.nodes
    mover = a.lab.containers[0]
    quotas = {"classes": [1], "containers": {mover.veid: {"out": QUOTA}}}
    fleet.start_central()
    fleet.start_central(pull=True)
    if shutil.which("victoria-metrics"):  # a second store: every agent writes to both
        fleet.start_victoria_metrics()
    for node in fleet.nodes:
        fleet.start_exporter(node, fleet.write_config(node, quotas))
        fleet.start_agent(node)
    history(fleet, 3 * 2 * 3)  # nodes x containers x directions (in, out, total)
    start = time.time()
    ledger = Ledger()
    for node in fleet.nodes:
        ledger.traffic(node, 2)
    wait_arrived(fleet, ledger, "traffic on three nodes, pushed")
    wait_arrived(fleet, ledger, "traffic on three nodes, pulled", pull=True)
    for pull in (False, True):
        found = fleet.query("vz_traffic_ip_bytes_total", pull)
        assert {r["metric"]["instance"] for r in found} == {"node-a", "node-b", "node-c"}
        assert {r["metric"]["node"] for r in found} == {"node-a", "node-b", "node-c"}

    # The container migrates from node A to node B, keeping its addresses.
    fleet.remove_container(a, mover)
    a.list_containers(a.lab.containers)
    moved = fleet.add_container(b, mover)
    b.list_containers(b.lab.containers)
    on_b = f'{{veid="{mover.veid}",instance="node-b",class="1"}}'
    wait_for(
        "the migrated container on node B", lambda: bool(fleet.query(f"vz_traffic_ip_bytes_total{on_b}")), 30
    )

    # Node A's agent is killed and started again; the other nodes do not notice.
    assert a.agent is not None
    os.killpg(a.agent.pid, signal.SIGKILL)
    a.agent.wait(10)
    ledger.traffic(b, 1, skip=mover.veid)  # the migrated container waits for its minute of history on B
    ledger.traffic(c, 1)
    wait_arrived(fleet, ledger, "the other nodes' traffic, node A's agent down")
    for ct in a.lab.containers:  # counted by node A's exporter while its agent is down
        ledger.send(a, ct, "in", 4, 200)
    fleet.start_agent(a)
    ledger.traffic(a, 1)
    wait_arrived(fleet, ledger, "node A's traffic after its agent's restart")
    wait_arrived(fleet, ledger, "all of it, pulled", pull=True)

    # The rules count a series' growth from a minute after the central store first recorded it.
    recorded = f'instance_veid_direction:vz_traffic_quota_bytes:sum{{veid="{mover.veid}",instance="node-b"}}'
    wait_for(
        "a minute of node B's sums for the container", lambda: bool(fleet.query(f"{recorded} offset 1m")), 90
    )

    # The central store is away for 60 s while traffic goes on; the agents keep it, and deliver it later.
    fleet.stop_central()
    away = time.monotonic()
    before = sum(ledger.sent.values())
    for node in fleet.nodes:
        ledger.traffic(node, 1)
    sent = ledger.send(b, moved, "out", 30, 1000)
    assert sent > QUOTA
    time.sleep(max(0.0, 50 - (time.monotonic() - away)))
    for node in fleet.nodes:
        ledger.traffic(node, 1)
    time.sleep(max(0.0, 60 - (time.monotonic() - away)))
    fleet.start_central()
    back = time.monotonic()
    wait_arrived(fleet, ledger, "the outage's traffic, delivered by the agents", timeout=120)
    print(
        f"outage: {back - away:.0f} s, {sum(ledger.sent.values()) - before} bytes of traffic meanwhile, "
        f"all in the store {time.monotonic() - back:.1f} s after it came back"
    )
    wait_arrived(fleet, ledger, "the same traffic, pulled", pull=True)
    both = fleet.query(f'vz_traffic_ip_bytes_total{{veid="{mover.veid}",direction="out",class="1"}}')
    assert {r["metric"]["instance"] for r in both} == {"node-a", "node-b"}  # A keeps its final series

    def firing() -> list[dict[str, str]]:
        alerts = fleet.query('ALERTS{alertname="VzTrafficQuotaExceeded",alertstate="firing"}')
        return [r["metric"] for r in alerts]

    wait_for("VzTrafficQuotaExceeded", lambda: bool(firing()), 150, every=1)
    assert [(m["veid"], m["direction"]) for m in firing()] == [(mover.veid, "out")]
    assert "node" not in firing()[0] and "instance" not in firing()[0]

    # The month to date of the migrated container counts what it sent on both nodes, exactly, once an
    # evaluation of the rules has seen the last counts (the rules add the counters' growth at each one).
    month = f'veid_direction:vz_traffic_quota_bytes:month_to_date{{veid="{mover.veid}",direction="out"}}'

    def month_to_date() -> float:
        found = fleet.query(month)
        return float(found[0]["value"][1]) if found else -1.0

    out = ledger.sent[(mover.veid, "out")]
    assert out > QUOTA
    wait_for("the month to date, whole", lambda: month_to_date() == out, 130, every=1)
    print(f"month to date of {mover.veid}, out: {month_to_date():.0f} bytes, sent {out} on A and B")
    time.sleep(2)
    end = time.time() - 1
    rows = report(fleet, start, end)
    for key, value in ledger.sent.items():
        assert rows.get(key) == value, (key, rows.get(key), value)
    print(f"report: {len(ledger.sent)} (container, direction) rows equal to the bytes sent")
    if fleet.victoria is not None:
        # VictoriaMetrics answers for samples older than its -search.latencyOffset (5 s here) only.
        time.sleep(max(0.0, end + 6 - time.time()))
        assert report(fleet, start, end, VM_PORT) == rows
        print("report from VictoriaMetrics: the same rows, through the killed agent and the outage")


def test_demo_fleet_shows_every_node_in_the_central_store_and_leaves_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    for tool in ("prometheus", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    from netlab.demo_fleet import PREFIX

    if leftover_namespaces(PREFIX):
        pytest.skip("a fleet demo is running on this machine")
    root = Path(__file__).resolve().parents[2]
    demo = subprocess.run(
        [sys.executable, "-m", "netlab.demo_fleet", "--duration", "90", "--exit-when-ready"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "every node's traffic reached the central store" in demo.stdout
    assert "central Prometheus:" in demo.stdout and "month_to_date" in demo.stdout
    assert leftover_namespaces(PREFIX) == []
