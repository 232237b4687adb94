"""The systemd unit and the files beside it, read against what the code needs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from vz_traffic_exporter import config, names
from vz_traffic_exporter.privileges import NAMES, needed

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = (PACKAGING / "vz-traffic-exporter.service").read_text()


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
