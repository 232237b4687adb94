"""A fleet of lab nodes and one central store, built from network namespaces.

Used by the fleet integration test and by ``make demo-fleet``.  Each node is
a :class:`~netlab.lab.Lab` (a node namespace routing for its containers and
a peer) with its own exporter and, in the push topology, a Prometheus agent
that remote-writes to the central store.  The central store is a Prometheus
in a hub namespace, with a management link to every node:

    node-a (2001:db8:f:1::2) --\\
    node-b (2001:db8:f:2::2) ---- hub (2001:db8:f:N::1): central Prometheus on [::]:9090
    node-c (2001:db8:f:3::2) --/

Only documentation addresses are used, and only inside the namespaces made
here; :meth:`Fleet.destroy` removes them all, processes included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .lab import CLASS_NETWORKS, HERE, Lab, LabContainer, delete_namespace, end_processes, run

ROOT = HERE.parent
RULES = ROOT / "prometheus" / "vz_traffic.rules.yml"
CENTRAL_PORT = 9090  # the push topology's central store
PULL_PORT = 9091  # the pull topology's, when both run side by side
AGENT_PORT = 9095
VM_PORT = 8428  # a VictoriaMetrics beside the central Prometheus, when the agents write to both
EXPORTER_PORT = 10057
JOB = "vz-traffic"


def management(index: int) -> tuple[str, str]:
    """(hub side, node side) of node index's management link (index from 1)."""
    return f"2001:db8:f:{index}::1", f"2001:db8:f:{index}::2"


def fleet_containers(prefix: str, index: int, count: int = 2) -> list[LabContainer]:
    """Node index's containers: veids i01, i02...; addresses 192.0.2.i1..., 2001:db8::i1..."""
    return [
        LabContainer(
            veid=f"{index}{j + 1:02d}",
            name=f"ct{index}{j + 1:02d}",
            ipv4=f"192.0.2.{10 * index + j + 1}",
            ipv6=f"2001:db8::{10 * index + j + 1:x}",
            ns=f"{prefix}ct{index}{j + 1:02d}",
            mac=f"02:00:00:00:{index:02x}:{j + 1:02x}",
        )
        for j in range(count)
    ]


@dataclass
class FleetNode:
    name: str  # node-a, node-b...: the instance label of its series
    index: int
    lab: Lab
    workdir: Path
    exporter: Optional[subprocess.Popen[bytes]] = None
    agent: Optional[subprocess.Popen[bytes]] = None

    @property
    def address(self) -> str:
        return management(self.index)[1]

    @property
    def hub_address(self) -> str:
        return management(self.index)[0]

    @property
    def inventory(self) -> Path:
        return self.workdir / "vzlist.json"

    def list_containers(self, containers: list[LabContainer]) -> None:
        """What the node's vzlist lists (the exporter discovers it within a second)."""
        entries = [{"ctid": ct.veid, "name": ct.name, "ip": [ct.ipv4, ct.ipv6]} for ct in containers]
        tmp = self.inventory.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.inventory)


@dataclass
class Fleet:
    prefix: str
    workdir: Path
    nodes: list[FleetNode] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)  # the hub's
    centrals: dict[bool, subprocess.Popen[bytes]] = field(default_factory=dict)  # pull? -> its Prometheus
    victoria: Optional[subprocess.Popen[bytes]] = None  # a second store the agents write to

    @property
    def hub(self) -> str:
        return f"{self.prefix}hub"

    # -- building ------------------------------------------------------------

    def build(self, count: int = 3, containers: int = 2) -> Fleet:
        try:
            run(["ip", "netns", "add", self.hub])
            run(["ip", "-n", self.hub, "link", "set", "lo", "up"])
            for index in range(1, count + 1):
                name = f"node-{chr(ord('a') + index - 1)}"
                prefix = f"{self.prefix}{name[-1]}-"
                workdir = self.workdir / name
                workdir.mkdir(parents=True, exist_ok=True)
                node = FleetNode(name, index, Lab(prefix), workdir)
                self.nodes.append(node)
                node.lab.build(fleet_containers(prefix, index, containers))
                self._link(node)
        except BaseException:
            self.destroy()
            raise
        return self

    def _link(self, node: FleetNode) -> None:
        hub_if = f"mg-{node.name[-1]}"
        hub_side, node_side = management(node.index)
        run(["ip", "-n", node.lab.node, "link", "add", "mgmt", "type", "veth", "peer", "name", hub_if])
        run(["ip", "-n", node.lab.node, "link", "set", hub_if, "netns", self.hub])
        run(["ip", "-n", node.lab.node, "addr", "add", f"{node_side}/64", "dev", "mgmt", "nodad"])
        run(["ip", "-n", self.hub, "addr", "add", f"{hub_side}/64", "dev", hub_if, "nodad"])
        run(["ip", "-n", node.lab.node, "link", "set", "mgmt", "up"])
        run(["ip", "-n", self.hub, "link", "set", hub_if, "up"])

    def add_container(self, node: FleetNode, ct: LabContainer) -> LabContainer:
        """ct, moved onto node: a namespace of the node's with its addresses and MAC."""
        moved = LabContainer(ct.veid, ct.name, ct.ipv4, ct.ipv6, f"{node.lab.prefix}ct{ct.veid}", ct.mac)
        node.lab.add_container(moved)
        return moved

    def remove_container(self, node: FleetNode, ct: LabContainer) -> None:
        """ct gone from node (its namespace and link deleted, the node's routes to it with them)."""
        delete_namespace(ct.ns)
        node.lab.containers = [c for c in node.lab.containers if c.ns != ct.ns]

    # -- what runs on it -----------------------------------------------------

    def write_config(self, node: FleetNode, quotas: Optional[dict[str, Any]] = None) -> Path:
        """The node's exporter configuration: its containers from a vzlist, its own state file."""
        fake = node.workdir / "bin"
        fake.mkdir(exist_ok=True)
        script = fake / "vzlist"
        script.write_text(f'#!/bin/sh\n[ "$*" = "-a -j -o ctid,name,ip" ] || exit 2\ncat {node.inventory}\n')
        script.chmod(0o755)
        node.list_containers(node.lab.containers)
        data: dict[str, Any] = {
            "containers": {"discovery": ["vzlist"], "refresh_interval": "1s"},
            "network_classes": [
                {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
                {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
            ],
            "netfilter": {"backend": "nftables"},
            "state": {"poll_interval": "1s", "file": str(node.workdir / "state.json")},
        }
        if quotas:
            data["quotas"] = quotas
        path = node.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start_exporter(self, node: FleetNode, config: Path, python: str = sys.executable) -> None:
        path = f"{node.workdir / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        listen = f"127.0.0.1:{EXPORTER_PORT},[{node.address}]:{EXPORTER_PORT}"
        node.exporter = node.lab.spawn(
            node.lab.node,
            "env",
            f"PATH={path}",
            python,
            "-m",
            "vz_traffic_exporter",
            "--config",
            str(config),
            f"--web.listen-address={listen}",
            "--log.level=warn",
            cwd=str(ROOT),
        )
        wait_for(f"the exporter of {node.name}", lambda: self._listening(node.lab.node, EXPORTER_PORT), 30)

    def agent_config(self, node: FleetNode, interval: str = "1s") -> Path:
        """The shipped agent configuration (prometheus/fleet/agent.yml), filled in for node."""
        shipped = yaml.safe_load((ROOT / "prometheus" / "fleet" / "agent.yml").read_text())
        text = json.dumps(shipped)
        text = text.replace('"NODE"', json.dumps(node.name))
        text = text.replace(
            '"CENTRAL"', json.dumps(f"http://[{node.hub_address}]:{CENTRAL_PORT}/api/v1/write")
        )
        data = json.loads(text)
        data["global"]["scrape_interval"] = interval
        data["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
        data["remote_write"][0]["queue_config"]["min_backoff"] = "100ms"
        data["remote_write"][0]["queue_config"]["max_backoff"] = "1s"
        if self.victoria is not None:  # the same samples to a second store
            second = json.loads(json.dumps(data["remote_write"][0]))
            second["url"] = f"http://[{node.hub_address}]:{VM_PORT}/api/v1/write"
            data["remote_write"].append(second)
        path = node.workdir / "agent.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start_agent(self, node: FleetNode, interval: str = "1s") -> None:
        config = self.agent_config(node, interval)
        node.agent = node.lab.spawn(
            node.lab.node,
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={config}",
            f"--storage.agent.path={node.workdir / 'agent'}",
            f"--web.listen-address=127.0.0.1:{AGENT_PORT}",
            "--log.level=warn",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"the agent of {node.name}", lambda: self._listening(node.lab.node, AGENT_PORT), 30)

    def start_central(self, pull: bool = False, interval: str = "1s") -> None:
        """A central Prometheus in the hub: the shipped push configuration (a remote-write receiver, on
        CENTRAL_PORT) or pull configuration (scraping the nodes from a file_sd file, on PULL_PORT)."""
        name = "central-pull" if pull else "central-push"
        data = yaml.safe_load((ROOT / "prometheus" / "fleet" / f"{name}.yml").read_text())
        data["global"]["evaluation_interval"] = interval
        data["rule_files"] = [str(RULES)]
        data.pop("alerting", None)  # the test reads ALERTS from the store itself
        if pull:
            data["global"]["scrape_interval"] = interval
            targets = self.workdir / "targets"
            targets.mkdir(exist_ok=True)
            nodes = "".join(f"{n.name} [{n.address}]:{EXPORTER_PORT}\n" for n in self.nodes)
            (self.workdir / "nodes.txt").write_text(nodes)
            make_targets = ROOT / "prometheus" / "fleet" / "make-targets"
            subprocess.run(
                [
                    sys.executable,
                    str(make_targets),
                    str(self.workdir / "nodes.txt"),
                    str(targets / "nodes.json"),
                ],
                check=True,
            )
            data["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(targets / "*.json")]
        config = self.workdir / f"{name}.yml"
        config.write_text(yaml.safe_dump(data))
        port = PULL_PORT if pull else CENTRAL_PORT
        argv = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / name}",
            f"--web.listen-address=[::]:{port}",
            "--log.level=warn",
        ]
        if not pull:
            argv.append("--web.enable-remote-write-receiver")
        self.centrals[pull] = self.spawn_hub(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(name, lambda: self._listening(self.hub, port), 30)

    def start_victoria_metrics(self) -> None:
        """Debian's VictoriaMetrics in the hub on VM_PORT: agents started after it remote-write to it too."""
        self.victoria = self.spawn_hub(
            "victoria-metrics",
            f"-storageDataPath={self.workdir / 'victoria-metrics'}",
            f"-httpListenAddr=[::]:{VM_PORT}",
            "-enableTCP6",  # it listens on IPv4 only without it; the fleet speaks IPv6
            "-search.latencyOffset=5s",  # answers for samples older than this only (default 30s)
            "-loggerLevel=ERROR",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for("VictoriaMetrics", lambda: self._listening(self.hub, VM_PORT), 30)

    def stop_central(self, pull: bool = False) -> None:
        central = self.centrals.pop(pull, None)
        if central is not None and central.poll() is None:
            os.killpg(central.pid, signal.SIGTERM)
            central.wait(30)

    def spawn_hub(self, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.hub, *argv], start_new_session=True, **kwargs)
        self.processes.append(proc)
        return proc

    def _listening(self, ns: str, port: int) -> bool:
        return bool(run(["ip", "netns", "exec", ns, "ss", "-Hntl", f"sport = :{port}"], check=False).strip())

    # -- asking the central store --------------------------------------------

    def query(self, expr: str, pull: bool = False) -> list[dict[str, Any]]:
        """An instant query to a central store (the push one unless pull), from the hub."""
        port = PULL_PORT if pull else CENTRAL_PORT
        url = f"http://[::1]:{port}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        code = (
            "import sys, urllib.request\n"
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=30).read().decode())\n"
        )
        out = run(["ip", "netns", "exec", self.hub, sys.executable, "-c", code])
        answer = json.loads(out)
        if answer.get("status") != "success":
            raise RuntimeError(f"{expr}: {answer}")
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def hub_run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.hub, *argv], capture_output=True, text=True, check=False, cwd=ROOT
        )

    # -- teardown ------------------------------------------------------------

    def destroy(self) -> None:
        end_processes(self.processes, grace=10)
        for node in self.nodes:
            node.lab.destroy()
        delete_namespace(self.hub)


def wait_for(what: str, check: Any, timeout: float, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:g} s")
        time.sleep(every)
