"""End to end with Debian's Prometheus and Alertmanager: the shipped rules, alerts and dashboards.

Everything runs inside the lab's node namespace, on its own loopback: the
exporter (netfilter, Virtuozzo 9 nft counters and host-side interfaces), a
Prometheus scraping it every second with the shipped rules, an Alertmanager,
and a webhook receiver that writes down what it is sent.  Container 101 gets a
tiny quota and sends over it; the others stay under theirs; container 104 is
made while it all runs, and sends over its quota at once.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest
import yaml

from netlab.lab import PEERS, default_containers
from tests.dashboards import DASHBOARDS, load, queries

from .conftest import EXPORTER, ROOT, NodeLab
from .test_kernel_netns import VZ9_CLASSES, install_vz9_layout
from .test_persistence_netns import fake_vzlist

pytestmark = [pytest.mark.netns, pytest.mark.slow]

EXPORTER_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT, WEBHOOK_PORT = 10057, 19090, 19093, 19095
JOB = "vz-traffic"
TINY = 30000  # bytes: container 101's monthly out quota
ZONE = "Asia/Kolkata"  # the quotas' and the report's zone: +05:30, not a whole hour from UTC


def far_cycle_days() -> tuple[int, int]:
    """Two cycle days whose local midnights in ZONE are more than a day away: no billing month turns
    while the test runs."""
    today = datetime.now(ZoneInfo(ZONE)).day
    return (today + 10) % 28 + 1, (today + 17) % 28 + 1


WEBHOOK = f"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[1], "ab") as out:
            out.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {WEBHOOK_PORT}), Handler).serve_forever()
"""


def _tools() -> None:
    for tool in ("prometheus", "prometheus-alertmanager", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def get(lab: NodeLab, url: str) -> Any:
    code = (
        "import sys, urllib.request\n"
        f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    return json.loads(lab.ns(lab.node, sys.executable, "-c", code))


def query(lab: NodeLab, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = get(lab, url)
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _value(lab: NodeLab, expr: str) -> float:
    return float(query(lab, expr)[0]["value"][1])


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Until check() is true; a check that fails (a server not listening yet) counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except RuntimeError:  # the query's command failed: not up yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1)


def start_monitoring(lab: NodeLab, work: Path) -> Path:
    """Prometheus, Alertmanager and the webhook receiver in the node namespace; returns the webhook's file."""
    received = work / "webhook.jsonl"
    received.touch()
    lab.spawn(lab.node, sys.executable, "-c", WEBHOOK, str(received))
    alertmanager = {
        "route": {
            "receiver": "test",
            "group_by": ["alertname", "veid", "direction"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "test", "webhook_configs": [{"url": f"http://127.0.0.1:{WEBHOOK_PORT}/"}]}],
    }
    (work / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager))
    lab.spawn(
        lab.node,
        "prometheus-alertmanager",
        f"--config.file={work / 'alertmanager.yml'}",
        f"--storage.path={work / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
        "--cluster.listen-address=",
        "--log.level=warn",
    )
    prometheus = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [
            str(p) for p in sorted((ROOT / "prometheus").glob("*.rules.yml")) if ".test." not in p.name
        ],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]
        },
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER_PORT}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    lab.spawn(
        lab.node,
        "prometheus",
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        "--log.level=warn",
    )
    return received


def test_quota_alert_reaches_alertmanager_and_every_dashboard_query_has_data(
    kernel_lab: NodeLab, tmp_path: Path
) -> None:
    _tools()
    lab = kernel_lab
    ct101, ct102, ct103 = lab.containers
    install_vz9_layout(lab)
    ct104 = default_containers(lab.prefix, 4)[3]
    config, inventory = fake_vzlist(
        lab,
        netfilter={"backend": "nftables"},
        kernel={"nft_counters": True, "interfaces": True, "venetstat": False, "vznetstat": False},
        network_classes=VZ9_CLASSES,  # as the node's Virtuozzo 9 counts them
        quotas={
            "classes": [1],
            "timezone": ZONE,
            "cycle_day": far_cycle_days()[0],
            "default": {"out": "1GB", "total": "2GB"},
            "containers": {
                ct101.veid: {"out": TINY},
                ct104.veid: {"out": TINY, "cycle_day": far_cycle_days()[1]},
            },
        },
    )
    lab.start_serve(config, "--log.level=warn", port=EXPORTER_PORT)
    received = start_monitoring(lab, tmp_path)
    month_to_date = "veid_direction:vz_traffic_quota_bytes:month_to_date"
    wait_for("the first evaluation of the rules", lambda: bool(query(lab, month_to_date)), timeout=60)
    peering, world = PEERS["peering"][0], PEERS["world"][0]
    window_start = int(time.time())  # whole seconds, as RFC 3339 takes them
    sent = lab.send_udp(ct101.ns, ct101.ipv4, peering, 200, 1000)  # class 1: over its quota
    assert sent > TINY
    sent102 = lab.send_udp(ct102.ns, ct102.ipv4, peering, 20, 500)  # under its quota
    lab.send_udp(ct103.ns, ct103.ipv4, world, 20, 500)  # class 0: does not count
    lab.send_udp(ct103.ns, ct103.ipv6, PEERS["peering"][1], 20, 500)

    # A container made now: as soon as the exporter counts it, it sends over its quota.
    lab.add_container(ct104)
    inventory({ct.veid: [ct.ipv4, ct.ipv6] for ct in lab.containers})
    counted = f'ip="{ct104.ipv4}",veid="{ct104.veid}"'  # its address series: our rules count it
    wait_for("the new container's rules", lambda: counted in lab.scrape(EXPORTER_PORT)[1], 30)
    sent104 = lab.send_udp(ct104.ns, ct104.ipv4, peering, 100, 1000)

    def delivered() -> list[dict[str, Any]]:
        alerts = []
        for line in received.read_text().splitlines():
            alerts += json.loads(line)["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "VzTrafficQuotaExceeded"]

    over = {(ct101.veid, "out"), (ct104.veid, "out")}
    wait_for(
        "VzTrafficQuotaExceeded at the webhook for 101 and 104",
        lambda: {(a["labels"]["veid"], a["labels"]["direction"]) for a in delivered()} == over,
        timeout=60,
    )
    assert all(a["status"] == "firing" for a in delivered())
    firing = get(lab, f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/alerts")["data"]["alerts"]
    exceeded = [a["labels"] for a in firing if a["labels"]["alertname"] == "VzTrafficQuotaExceeded"]
    assert {(a["veid"], a["direction"]) for a in exceeded} == over
    # The month to date is what was sent, to the byte, once the last counts are in.
    for ct, nbytes in ((ct101, sent), (ct104, sent104), (ct102, sent102)):
        expr = f'{month_to_date}{{veid="{ct.veid}",direction="out"}}'
        wait_for(f"the month to date of {ct.veid}", lambda e=expr, n=nbytes: _value(lab, e) == n, 10)  # type: ignore[misc]

    # Each container's billing month, as the exporter exports it: from local midnight of its cycle day.
    for ct, day in ((ct101, far_cycle_days()[0]), (ct104, far_cycle_days()[1])):
        start = _value(lab, f'vz_traffic_quota_cycle_start_timestamp_seconds{{veid="{ct.veid}"}}')
        local = datetime.fromtimestamp(start, ZoneInfo(ZONE))
        assert (local.day, local.hour, local.minute) == (day, 0, 0) and start <= time.time(), local

    # report over the window: the bytes sent in the quota classes, to the byte, per container and direction.
    time.sleep(3)  # the last counts scraped (1 s) before the window's end
    window_end = int(time.time()) - 1
    rfc3339 = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (window_start, window_end)]
    report = lab.node_cmd(
        *EXPORTER, "report", f"--prometheus.url=http://127.0.0.1:{PROMETHEUS_PORT}",
        f"--from={rfc3339[0]}", f"--to={rfc3339[1]}", f'--selector={{job="{JOB}"}}', "--format=json",
        f"--timezone={ZONE}", "--percentile=100", "--percentile-interval=1s",
    )  # fmt: skip
    rows = {(r["veid"], r["direction"]): r["bytes"] for r in json.loads(report.stdout)}
    assert {r["complete"] for r in json.loads(report.stdout)} == {True}
    local = [datetime.fromtimestamp(t, ZoneInfo(ZONE)).isoformat() for t in (window_start, window_end)]
    assert {(r["start"], r["end"]) for r in json.loads(report.stdout)} == {tuple(local)}  # +05:30
    # The busiest second of 101's out traffic: at least its bytes spread over the whole window.
    peak = {(r["veid"], r["direction"]): r["p100_bps"] for r in json.loads(report.stdout)}
    assert peak[(ct101.veid, "out")] >= 8 * sent / (window_end - window_start) > 0
    assert rows[(ct104.veid, "out")] == sent104  # made in the window: counted from 0
    assert rows[(ct101.veid, "out")] == sent and rows[(ct101.veid, "in")] == 0
    assert rows[(ct102.veid, "out")] == sent102 and rows[(ct102.veid, "total")] == sent102
    assert rows[(ct103.veid, "out")] == 20 * (40 + 8 + 500)  # IPv6 to the peering peer; its class 0 left out
    assert {
        r["quota_bytes"]
        for r in json.loads(report.stdout)
        if r["veid"] == ct101.veid and r["direction"] == "out"
    } == {TINY}

    # Every dashboard query answers with data from this Prometheus.
    values = {"job": JOB, "instance": ".*", "veid": ".*", "class": ".*"}
    empty = []
    for path in DASHBOARDS:
        for where, expr, label in queries(load(path), values):
            result = query(lab, expr)
            if not result or (label and not any(label in r["metric"] for r in result)):
                empty.append(f"{path.name}: {where}: {expr}")
    assert not empty, "\n".join(empty)
