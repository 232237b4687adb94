"""A new operator's first hour: units, ranges, errors that name the culprit, docs that match the code."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ReplayRunner
from vz_traffic_exporter import cli, privileges
from vz_traffic_exporter.config import load
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.runner import CommandError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parents[2]


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = cli.main(["--config", str(path), "check-config"])
    return code, capsys.readouterr().err.replace(f"{path}: ", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("state: {retention: 35}\n", "state.retention: 35 has no unit: write 35s, 35m, 35h or 35d"),
        ("state: {retention: '35'}\n", "state.retention: '35' has no unit: write 35s, 35m, 35h or 35d"),
        ("state: {poll_interval: 1ms}\n", "state.poll_interval: '1ms' is not between 1s and 1h"),
        (
            "state: {poll_interval: 5m, retention: 1m}\n",
            "state.retention: '1m' is not between 5m and 3660d",
        ),
        (
            "network_classes: [{id: 1, networks: [203.0.113.5]}]\n",
            "network_classes[0].networks[0]: '203.0.113.5' has no prefix: "
            "write 203.0.113.5/32 for one address",
        ),
        (
            "containers: {static: [{veid: 0101, ips: [192.0.2.11]}]}\n",
            'containers.static[0].veid: 0101 is read by YAML as the number 65: quote it ("0101")',
        ),
        (
            "quotas: {containers: {0x65: {total: 1TB}}}\n",
            'quotas.containers.0x65: 0x65 is read by YAML as the number 101: quote it ("0x65")',
        ),
    ],
)
def test_units_ranges_and_quoting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    code, err = check(tmp_path, capsys, text)
    assert code == 2 and err.strip() == problem


def test_a_plain_number_veid_is_still_a_veid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, capsys, "containers: {static: [{veid: 101}]}\n")[0] == 0


def test_a_negative_request_limit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--web.max-requests", "-5", "check-config"])
    assert stop.value.code == 2
    assert "argument --web.max-requests: '-5' is not a whole number of 0 or more" in capsys.readouterr().err


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11's")
def test_the_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


# --- errors that name the culprit ------------------------------------------------------------------------


def test_an_unknown_command_suggests_the_closest_and_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["chek-config"])
    err = capsys.readouterr().err
    assert "unknown command 'chek-config'; did you mean 'check-config'?" in err
    assert "(commands: serve, dump, check-config, rules sync, rules remove, rules show, report)" in err


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1:99999", "'127.0.0.1:99999': port 99999 is out of range (1..65535)"),
        ("127.0.0.1", "'127.0.0.1' is not host:port (:10057, 127.0.0.1:10057, [::1]:10057)"),
    ],
)
def test_a_bad_listen_address_says_what_is_wrong(
    capsys: pytest.CaptureFixture[str], address: str, why: str
) -> None:
    assert cli.main([f"--web.listen-address={address}", "serve"]) == 2
    assert capsys.readouterr().err.strip() == f"--web.listen-address: {why}"


def test_an_address_that_cannot_be_bound_is_named_and_the_firewall_left_alone(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    runner = ReplayRunner({}, installed=("iptables", "ip6tables", "nft"))
    config = write_config("netfilter: {backend: nftables}\nstate: {file: /nonexistent/state.json}\n")
    try:
        code = cli.main(["--config", config, f"--web.listen-address=127.0.0.1:{port}"], runner=runner)
    finally:
        taken.close()
    assert code == 1
    assert f'msg="cannot listen on 127.0.0.1:{port}: Address already in use"' in capsys.readouterr().err
    assert runner.calls == []  # nothing synced: the address comes first


def test_a_missing_tls_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.crt, key_file: server.key}\n")
    assert cli.main(["--web.config.file", str(web), "check-config"]) == 2
    err = capsys.readouterr().err
    assert f"cert_file {tmp_path}/server.crt: No such file or directory" in err


def test_an_unknown_web_config_key_lists_the_expected_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_user: {}\n")
    assert cli.main(["--web.config.file", str(web), "check-config"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{web}: basic_auth_user: unknown key (expected one of: "
        "tls_server_config, http_server_config, basic_auth_users)"
    )


def test_without_cap_net_admin_auto_says_one_clear_line_and_runs_nothing(
    write_config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(privileges, "may_admin_netfilter", lambda: False)
    runner = ReplayRunner({}, installed=("iptables", "ip6tables", "nft", "ipset"))
    config = load(write_config("containers: {discovery: [static]}\nkernel: {interfaces: false}\n"))
    with caplog.at_level(logging.INFO):
        exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
        statuses = {s.name for s in exporter.poll().statuses}
    assert exporter.backend_name() is None and statuses == {"static"}
    lines = [r.getMessage() for r in caplog.records if "netfilter" in r.getMessage()]
    assert lines == [
        "netfilter accounting is off: every netfilter backend needs CAP_NET_ADMIN, which this process "
        f"(uid {os.geteuid()}) does not have; grant it (AmbientCapabilities=CAP_NET_ADMIN in the systemd "
        "unit) or run as root"
    ]
    backends = [
        a for a, _ in runner.calls if a[0] in ("ipset", "iptables-save") or a == ("nft", "list", "tables")
    ]
    assert backends == []  # (the nft_counters kernel source still looks for Virtuozzo 9 tables)


# --- nothing counted, nothing said ---------------------------------------------------------------------


def test_no_containers_is_said_once(write_config, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    config = load(write_config("containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\n"))
    exporter = Exporter(config, ReplayRunner({}, installed=()), procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.WARNING):
        exporter.poll()
        exporter.poll()
    assert [r.getMessage() for r in caplog.records] == [
        "no containers found (discovery sources: static): nothing is counted; list them in "
        "containers.static, or see why the discovery sources find none"
    ]


def test_no_accounting_objects_are_said(write_config, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    missing = CommandError(["nft"], 1, "Error: No such file or directory; did you mean table 'filter'?")
    runner = ReplayRunner(
        {("nft", "list", "tables"): "", ("nft", "-j", "list", "table", "inet", "vz_traffic"): missing},
        installed=("nft",),
    )
    config = load(
        write_config(
            "containers: {static: [{veid: '101', ips: [192.0.2.11]}], discovery: [static]}\n"
            "netfilter: {backend: nftables}\nkernel: {interfaces: false, nft_counters: false}\n"
        )
    )
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.WARNING):
        snapshot = exporter.poll()
    assert {s.name: s.up for s in snapshot.statuses} == {"static": True, "nftables": True}
    assert "no accounting objects of the nftables backend are installed" in caplog.text
    assert "run `vz-traffic-exporter rules sync`, or start `serve`" in caplog.text


# --- what make test and make demo install --------------------------------------------------------------


def install_deps(*args: str) -> list[str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-deps"), *args], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


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


# --- metric noise -----------------------------------------------------------------------------------------


def test_resets_only_for_counting_sources_and_the_quota_classes_of_this_node(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    config = write_config(
        "containers: {static: [{veid: '101', ips: [192.0.2.11]}], discovery: [static]}\n"
        "network_classes: [{id: 1, networks: [198.51.100.0/24]}]\n"
        "netfilter: {backend: 'off'}\n"
        "kernel: {interfaces: true, venetstat: false, vznetstat: false, nft_counters: false}\n"
    )
    argv = [
        "--config",
        config,
        "dump",
        "--path.procfs=/nonexistent",
        f"--path.sysfs={ROOT / 'tests/fixtures/sys'}",
    ]
    assert cli.main(argv, runner=ReplayRunner({}, installed=())) == 0
    text = capsys.readouterr().out
    resets = [line for line in text.splitlines() if line.startswith("vz_traffic_counter_resets_total{")]
    assert resets == ['vz_traffic_counter_resets_total{source="interfaces"} 0.0']
    classes = [line for line in text.splitlines() if line.startswith("vz_traffic_quota_class_info{")]
    assert classes == [
        'vz_traffic_quota_class_info{class="0"} 1.0',
        'vz_traffic_quota_class_info{class="1"} 1.0',
    ]
