"""The systemd unit and the files beside it, read against what the code needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

import re

import yaml

from vz_traffic_exporter import config, names
from vz_traffic_exporter.privileges import NAMES, needed

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = (PACKAGING / "vz-traffic-exporter.service").read_text()


def install_deps(*args: str) -> list[str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-deps"), *args], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def directive(name: str) -> list[str]:
    return re.findall(rf"(?m)^{name}=(.*)$", UNIT)


def test_the_units_capabilities_are_what_the_backends_need_and_no_more() -> None:
    wanted = {
        NAMES[cap]
        for backend in names.BACKENDS
        for legacy in (False, True)
        for cap in needed(backend, legacy)
    }
    assert set(directive("AmbientCapabilities")[0].split()) == wanted
    assert set(directive("CapabilityBoundingSet")[0].split()) == wanted


def test_the_unit_runs_unprivileged_hardened_and_in_the_hosts_network() -> None:
    assert directive("User") == ["vz-traffic-exporter"]
    assert directive("NoNewPrivileges") == ["yes"] and directive("ProtectSystem") == ["strict"]
    assert directive("StateDirectory") == ["vz-traffic-exporter"]
    assert config.StateConfig().file.startswith("/var/lib/vz-traffic-exporter/")
    assert directive("EnvironmentFile") == ["-/etc/default/vz-traffic-exporter"]
    assert directive("ExecStart")[0].endswith("--config /etc/vz-traffic-exporter/config.yaml $ARGS")
    for absent in ("PrivateNetwork", "PrivateUsers", "ExecReload"):  # no SIGHUP reload in the exporter
        assert not directive(absent), absent
    after = " ".join(directive("After"))
    for firewall in (
        "netfilter-persistent.service",
        "nftables.service",
        "iptables.service",
        "firewalld.service",
    ):
        assert firewall in after  # started after, so stopped before: the final read sees the counters


def test_the_default_file_and_the_config_are_as_installed() -> None:
    assert re.search(r'(?m)^ARGS=""$', (PACKAGING / "default").read_text())
    shipped = config.validate(yaml.safe_load((PACKAGING / "config.yaml").read_text()), "config.yaml")
    assert shipped == config.Config(source="config.yaml")  # commented: the built-in defaults
    nfpm = yaml.safe_load((PACKAGING / "nfpm.yaml").read_text())
    kinds = {c["dst"]: c.get("type", "") for c in nfpm["contents"]}
    assert (
        kinds["/etc/default/vz-traffic-exporter"]
        == kinds["/etc/vz-traffic-exporter/config.yaml"]
        == "config|noreplace"
    )


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11's")
def test_the_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def test_the_demo_installs_a_subset_of_what_the_tests_install() -> None:
    demo, tests = install_deps("list-demo"), install_deps("list-test")
    assert set(demo) < set(tests)
    assert not {"prometheus", "prometheus-alertmanager", "rpm"} & set(demo)
    fleet = install_deps("list-demo-fleet")
    assert set(demo) < set(fleet) < set(tests) and set(fleet) - set(demo) == {"prometheus"}


def test_a_service_the_tests_install_is_left_disabled(tmp_path: Path) -> None:
    """install-deps against stand-ins for dpkg-query, apt-get and systemctl that record their calls."""
    calls = tmp_path / "calls"
    for tool, body in (
        ("dpkg-query", 'case "$*" in *prometheus*) exit 1;; *) echo "install ok installed";; esac'),
        ("apt-get", 'echo "apt-get $*" >> ' + str(calls)),
        ("systemctl", 'echo "systemctl $*" >> ' + str(calls)),
        ("id", "echo 0"),
    ):
        (tmp_path / tool).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    subprocess.run([str(ROOT / "scripts" / "install-deps"), "test"], env=env, check=True, capture_output=True)
    recorded = calls.read_text().splitlines()
    assert "apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager" in recorded
    for service in ("prometheus", "prometheus-alertmanager"):
        assert f"systemctl stop {service}.service" in recorded
        assert f"systemctl disable {service}.service" in recorded
    calls.unlink()
    subprocess.run([str(ROOT / "scripts" / "install-deps"), "demo"], env=env, check=True, capture_output=True)
    assert not calls.exists()  # the demo's packages are all there: nothing installed, nothing disabled
