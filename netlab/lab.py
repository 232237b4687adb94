"""A node with containers and peers, built from network namespaces.

Used by the integration tests and by ``make demo``.  Everything lives in
namespaces this module creates (named with a prefix of the caller's choice)
and uses documentation addresses only; the root namespace's interfaces,
firewall and routing are never touched.  :meth:`Lab.destroy` removes it all.

Topology: every container and the peer namespace has one veth link to the
node, which routes between them.  Neighbour entries are static and duplicate
address detection is off, so the only IP traffic is the traffic a test sends
(byte-exact counting needs that).

    ct101 --\\                      /-- 203.0.113.10, 2001:db8:200::10   (no class: 0)
    ct102 ---- node (192.0.2.1) -- peer -- 198.51.100.10, 2001:db8:100::10 (class 1)
    ct103 --/   (2001:db8::1)       \\-- 198.51.100.200, 2001:db8:100:8000::10 (a class-0
                                                                             hole in class 1)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

NODE_V4 = "192.0.2.1"
NODE_V6 = "2001:db8::1"
GATEWAY_V6 = "fe80::1"
PEERS = {
    # name: (ipv4, ipv6)
    "world": ("203.0.113.10", "2001:db8:200::10"),
    "peering": ("198.51.100.10", "2001:db8:100::10"),
    "hole": ("198.51.100.200", "2001:db8:100:8000::10"),
}
CLASS_NETWORKS = {
    1: ["198.51.100.0/24", "2001:db8:100::/48"],
    0: ["198.51.100.128/25", "2001:db8:100:8000::/49"],
}
SINK_PORT = 9


@dataclass(frozen=True)
class LabContainer:
    veid: str
    name: str
    ipv4: str
    ipv6: str
    ns: str
    mac: str


def default_containers(prefix: str, count: int = 3) -> list[LabContainer]:
    cts = []
    for i in range(count):
        veid = str(101 + i)
        cts.append(
            LabContainer(
                veid=veid,
                name=f"ct{veid}",
                ipv4=f"192.0.2.{11 + i}",
                ipv6=f"2001:db8::{11 + i:x}",
                ns=f"{prefix}ct{veid}",
                mac=f"02:00:00:00:01:{i + 1:02x}",
            )
        )
    return cts


def host_ifname(ct: LabContainer) -> str:
    """The node-side device of a container, named as legacy OpenVZ names veth devices."""
    return f"veth{ct.veid}.0"


def run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Lab:
    prefix: str
    containers: list[LabContainer] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    NODE_MAC = "02:00:00:00:00:01"
    PEER_MAC = "02:00:00:00:02:01"

    @property
    def node(self) -> str:
        return f"{self.prefix}node"

    @property
    def peer(self) -> str:
        return f"{self.prefix}peer"

    def namespaces(self) -> list[str]:
        return [self.node, self.peer, *(ct.ns for ct in self.containers)]

    # -- building ------------------------------------------------------------

    def ns(self, ns: str, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        return run(["ip", "netns", "exec", ns, *argv], check=check, stdin=stdin)

    def _new_ns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        for key, value in (
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.accept_ra", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
            ("net.ipv6.conf.all.forwarding", "1" if ns == self.node else "0"),
            ("net.ipv4.ip_forward", "1" if ns == self.node else "0"),
        ):
            self.ns(ns, "sysctl", "-q", "-w", f"{key}={value}")
        self.ns(ns, "ip", "link", "set", "lo", "up")

    def _link(self, ns: str, node_if: str, mac: str) -> None:
        """A veth between ns (eth0, mac) and the node (node_if, NODE_MAC)."""
        run(
            [
                "ip",
                "-n",
                self.node,
                "link",
                "add",
                node_if,
                "address",
                self.NODE_MAC,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                mac,
                "netns",
                ns,
            ]
        )
        run(["ip", "-n", self.node, "link", "set", node_if, "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        # The other side's gateway addresses, resolved statically.
        for gw in (NODE_V4, GATEWAY_V6):
            run(
                [
                    "ip",
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    gw,
                    "lladdr",
                    self.NODE_MAC,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ]
            )
        run(["ip", "-n", ns, "route", "add", "default", "via", NODE_V4, "dev", "eth0", "onlink"])
        run(["ip", "-n", ns, "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0"])

    def _route_to(self, node_if: str, address: str, mac: str) -> None:
        run(["ip", "-n", self.node, "route", "add", address, "dev", node_if])
        run(
            [
                "ip",
                "-n",
                self.node,
                "neigh",
                "replace",
                address,
                "lladdr",
                mac,
                "dev",
                node_if,
                "nud",
                "permanent",
            ]
        )

    def build(self, containers: list[LabContainer]) -> Lab:
        self.containers = list(containers)
        try:
            self._new_ns(self.node)
            for addr in (f"{NODE_V4}/32", f"{NODE_V6}/128"):
                run(["ip", "-n", self.node, "addr", "add", addr, "dev", "lo"])
            self._new_ns(self.peer)
            self._link(self.peer, "vpeer", self.PEER_MAC)
            for v4, v6 in PEERS.values():
                run(["ip", "-n", self.peer, "addr", "add", f"{v4}/32", "dev", "eth0"])
                run(["ip", "-n", self.peer, "addr", "add", f"{v6}/128", "dev", "eth0", "nodad"])
                self._route_to("vpeer", v4, self.PEER_MAC)
                self._route_to("vpeer", v6, self.PEER_MAC)
            self.start_sink(self.peer)
            self.start_sink(self.node)
            for ct in self.containers:
                self.add_container(ct)
        except BaseException:
            self.destroy()
            raise
        return self

    def add_container(self, ct: LabContainer) -> None:
        if ct not in self.containers:
            self.containers.append(ct)
        node_if = host_ifname(ct)
        self._new_ns(ct.ns)
        self._link(ct.ns, node_if, ct.mac)
        run(["ip", "-n", ct.ns, "addr", "add", f"{ct.ipv4}/32", "dev", "eth0"])
        run(["ip", "-n", ct.ns, "addr", "add", f"{ct.ipv6}/128", "dev", "eth0", "nodad"])
        self._route_to(node_if, ct.ipv4, ct.mac)
        self._route_to(node_if, ct.ipv6, ct.mac)
        self.start_sink(ct.ns)

    def start_sink(self, ns: str) -> None:
        """A UDP receiver, so that datagrams are consumed, not answered with ICMP errors."""
        self.spawn(ns, sys.executable, str(HERE / "traffic.py"), "sink", str(SINK_PORT))
        deadline = time.monotonic() + 10
        while f":{SINK_PORT} " not in self.ns(ns, "ss", "-Hnul"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the UDP sink in {ns} did not start")
            time.sleep(0.02)

    def spawn(self, ns: str, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc  # type: ignore[no-any-return]

    # -- traffic -------------------------------------------------------------

    def send_udp(self, ns: str, src: str, dst: str, count: int, size: int) -> int:
        """Send count datagrams of size payload bytes; returns the IP-level bytes sent."""
        self.ns(
            ns,
            sys.executable,
            str(HERE / "traffic.py"),
            "send",
            src,
            dst,
            str(SINK_PORT),
            str(count),
            str(size),
        )
        header = 20 if ":" not in dst else 40
        return count * (header + 8 + size)

    # -- teardown ------------------------------------------------------------

    def stop_processes(self) -> None:
        """End every process the lab started (exporters included), leaving the namespaces."""
        end_processes(self.processes)

    def destroy(self) -> None:
        self.stop_processes()
        for ns in self.namespaces():
            delete_namespace(ns)


def end_processes(processes: list[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """End processes started in sessions of their own (SIGTERM to each group, SIGKILL after grace)."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    processes.clear()


def delete_namespace(ns: str) -> None:
    """A namespace and whatever still runs in it, gone (nothing if it does not exist)."""
    for pid in run(["ip", "netns", "pids", ns], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", ns], check=False)


def leftover_namespaces(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
