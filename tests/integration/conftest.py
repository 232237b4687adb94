"""Namespace labs for integration tests: real kernel, real iptables, real traffic.

Each test gets its own lab (node, three containers, a peer) in namespaces
named with a unique prefix; they are destroyed after the test, pass or fail.
The exporter runs inside the node namespace with a PATH that selects the
iptables variant under test, the way a host's alternatives do.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from netlab.lab import CLASS_NETWORKS, Lab, LabContainer, default_containers, leftover_namespaces
from tests.host_state import differences, host_state, tables

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = [sys.executable, "-m", "vz_traffic_exporter"]
_serial = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """The whole suite leaves the host's firewall, packages, users and units as it found them."""
    if os.geteuid() != 0:
        yield
        return
    before = host_state()
    yield
    changed = differences(before, host_state())
    assert not changed, "the integration tests changed the host:\n" + "\n".join(changed)


@pytest.fixture(scope="session")
def static_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make binary's exporter, built once for the tests of the binary and of the EL7 rpm."""
    out = tmp_path_factory.mktemp("binary")
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-binary")],
        cwd=ROOT,
        env=dict(os.environ, OUT=str(out)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (found,) = out.iterdir()
    return found


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    for tool in ("ip", "iptables-legacy", "iptables-nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def _bindir(tmp_path: Path, variant: str) -> str:
    """A PATH directory whose iptables* commands are the given variant."""
    _require_root_and_tools()
    bindir = tmp_path / f"bin-{variant}"
    bindir.mkdir()
    for base in ("iptables", "ip6tables"):
        for suffix in ("", "-save", "-restore"):
            target = shutil.which(f"{base}-{variant}{suffix}")
            assert target, f"{base}-{variant}{suffix} missing"
            (bindir / f"{base}{suffix}").symlink_to(target)
    return str(bindir)


@pytest.fixture(params=["legacy", "nft"])
def variant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The iptables variant under test (for the iptables backend)."""
    yield _bindir(tmp_path, request.param)


# (netfilter backend, iptables variant of the node's tools)
SETUPS = {
    "iptables-legacy": ("iptables", "legacy"),
    "iptables-nft": ("iptables", "nft"),
    "nftables": ("nftables", "nft"),
    "ipset": ("ipset", "nft"),
}


class NodeLab(Lab):
    """A lab plus the helpers to run the exporter and iptables on its node."""

    bindir: str = ""
    backend: str = "iptables"  # the netfilter backend the tests configure
    baseline: dict[str, list[str]]  # the node's tables once built
    operator_tables: set[tuple[str, str]]  # tables the test made as the node's operator
    workdir: Path = Path()
    path: Optional[str] = None  # a PATH of the test's choosing for the exporter

    def env_path(self) -> str:
        if self.path is not None:
            return self.path
        return f"{self.bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"

    def node_cmd(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.node, "env", f"PATH={self.env_path()}", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def firewall(self) -> str:
        """Everything in the node's firewall, without counters: iptables, ip6tables, nft, ipset.

        The nft tables of iptables-nft are left to iptables-save: it shows
        them as iptables does, where nft would also show built-in chains that
        iptables-nft made on first use and never deletes.
        """
        ruleset = self.node_cmd("nft", "list", "ruleset").stdout
        tables = re.split(r"(?m)^(?=table )", ruleset)
        native = [t for t in tables if not re.match(r"table (ip|ip6) (filter|nat|mangle|raw|security) ", t)]
        parts = [self.save("ipv4"), self.save("ipv6"), *native, self.node_cmd("ipset", "save").stdout]
        return re.sub(r"counter packets \d+ bytes \d+", "counter", "\n".join(parts))

    def iptables(self, family: str, *args: str) -> str:
        """Run the node's iptables as its operator would (their rules, their table)."""
        self.operator_tables.add(("nft", f"table {'ip' if family == 'ipv4' else 'ip6'} filter"))
        self.operator_tables.add((f"legacy {'ip' if family == 'ipv4' else 'ip6'}", "filter"))
        return self.node_cmd("iptables" if family == "ipv4" else "ip6tables", "-w", *args).stdout

    def tables(self) -> dict[str, list[str]]:
        return tables(self.node)

    def check_tables_left_as_found(self) -> None:
        """After `rules remove`, the node holds the tables it had before the test, and the operator's.

        On a legacy node the kernel's filter table, once made, cannot be removed: it may stay.
        """
        self.node_cmd(*EXPORTER, "--config", self.write_config([]), "rules", "remove", check=False)
        after = self.tables()
        for kind, names in after.items():
            allowed = set(self.baseline.get(kind, ())) | {n for k, n in self.operator_tables if k == kind}
            if kind.startswith("legacy"):
                allowed.add("filter")
            assert set(names) <= allowed, f"{kind}: tables left behind: {sorted(set(names) - allowed)}"
            gone = set(self.baseline.get(kind, ())) - set(names)
            assert not gone, f"{kind}: tables that were there before are gone: {sorted(gone)}"

    def save(self, family: str) -> str:
        """iptables-save of the filter table without counters and comments."""
        tool = "iptables-save" if family == "ipv4" else "ip6tables-save"
        out = self.node_cmd(tool, "-t", "filter").stdout
        return "\n".join(
            line.split(" [")[0] if line.startswith(":") else line
            for line in out.splitlines()
            if not line.startswith("#")
        )

    def write_config(self, static: list[LabContainer], **sections: object) -> str:
        data: dict[str, object] = {
            "containers": {
                "static": [{"veid": ct.veid, "name": ct.name, "ips": [ct.ipv4, ct.ipv6]} for ct in static]
            },
            "network_classes": [
                {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
                {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
            ],
            "state": {"poll_interval": "1s", "file": str(self.state_file)},
        }
        netfilter = {"backend": self.backend, **sections.pop("netfilter", {})}  # type: ignore[dict-item]
        data.update(sections, netfilter=netfilter)
        path = self.workdir / f"config-{next(_serial)}.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    @property
    def state_file(self) -> Path:
        """The test's own state file (never the system's)."""
        return self.workdir / "state.json"

    def exporter(self, config: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.node_cmd(*EXPORTER, "--config", config, *args, check=check)

    def dump(self, config: str) -> dict[tuple[str, ...], float]:
        return parse_ip_series(self.exporter(config, "dump").stdout)

    def start_serve(
        self,
        config: str,
        *args: str,
        port: int = 10057,
        exporter: Sequence[str] = tuple(EXPORTER),
        **popen: object,
    ) -> subprocess.Popen[bytes]:
        """exporter: the command that runs the exporter (another user, another Python)."""
        proc = self.spawn(
            self.node,
            "env",
            f"PATH={self.env_path()}",
            *exporter,
            "--config",
            config,
            f"--web.listen-address=127.0.0.1:{port}",
            *args,
            cwd=str(ROOT),
            **popen,
        )
        deadline = time.monotonic() + 20
        while True:
            probe = subprocess.run(
                ["ip", "netns", "exec", self.node, "ss", "-Hntl", f"sport = :{port}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip():
                return proc
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the exporter did not start listening")
            time.sleep(0.1)

    def scrape(self, port: int = 10057, path: str = "/metrics") -> tuple[int, str]:
        code = (
            "import sys, urllib.request, urllib.error\n"
            f"try:\n r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=10)\n"
            " sys.stdout.write(str(r.status) + '\\n' + r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n sys.stdout.write(str(e.code) + '\\n')\n"
        )
        out = self.ns(self.node, sys.executable, "-c", code)
        status, _, body = out.partition("\n")
        return int(status), body


def parse_ip_series(text: str) -> dict[tuple[str, ...], float]:
    """{(metric, veid, ip, class, direction) or (metric, source): value}."""
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("vz_traffic_ip_"):
                key = (s.name, s.labels["veid"], s.labels["ip"], s.labels["class"], s.labels["direction"])
            elif "source" in s.labels:
                key = (s.name, s.labels["source"])
            else:
                key = (s.name, *sorted(s.labels.values()))
            out[key] = s.value
    return out


def _lab(bindir: str, workdir: Path, backend: str = "iptables") -> Iterator[NodeLab]:
    prefix = f"vzt{os.getpid() % 10000}x{next(_serial)}-"
    node_lab = NodeLab(prefix)
    node_lab.bindir = bindir
    node_lab.backend = backend
    node_lab.workdir = workdir
    node_lab.operator_tables = set()
    try:
        node_lab.build(default_containers(prefix))
        node_lab.baseline = node_lab.tables()
        yield node_lab
        node_lab.stop_processes()  # an exporter still serving would put its objects back
        node_lab.check_tables_left_as_found()
    finally:
        node_lab.destroy()
        assert leftover_namespaces(prefix) == []


@pytest.fixture(params=list(SETUPS))
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeLab]:
    """A lab for every netfilter backend (and both iptables variants)."""
    backend, variant = SETUPS[request.param]
    tool = {"nftables": "nft", "ipset": "ipset"}.get(backend)
    if tool and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    yield from _lab(_bindir(tmp_path, variant), tmp_path, backend)


@pytest.fixture
def iptables_lab(variant: str, tmp_path: Path) -> Iterator[NodeLab]:
    """A lab for what only the iptables backend has (adopted rules, iptables -Z)."""
    yield from _lab(variant, tmp_path)


@pytest.fixture
def kernel_lab(tmp_path: Path) -> Iterator[NodeLab]:
    """A lab for the kernel sources (nft, interfaces): the host's own tools."""
    _require_root_and_tools()
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    yield from _lab("/nonexistent", tmp_path)
