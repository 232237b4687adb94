from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ReplayRunner, managed_runner
from vz_traffic_exporter import cli

LAB = str(FIXTURES / "lab.yaml")


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", LAB, "check-config"],
        ["check-config", "--config", LAB],
        ["check-config", f"--config={LAB}", "--log.level", "debug"],
    ],
)
def test_flags_before_or_after_the_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_check_config_lists_every_problem_and_exits_2(
    write_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("netfilter: {backend: x}\ncontainers: {static: [{veid: '1', ips: [nope]}]}\n")
    assert cli.main(["--config", path, "check-config"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: netfilter.backend: 'x' is not one of" in err
    assert f"{path}: containers.static[0].ips[0]: 'nope' is not an IP address" in err
    assert "Traceback" not in err


def test_serve_refuses_an_invalid_config(write_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", write_config("bogus: 1\n")]) == 2
    assert "bogus: unknown key" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rules", "frobnicate"])
    assert exit_info.value.code == 2


def test_rules_show_prints_only_our_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", LAB, "rules", "show"], runner=managed_runner()) == 0
    out = capsys.readouterr().out
    assert "[10:1280] -A VZTRAFFIC-OUT-1 -s 192.0.2.11/32 -j RETURN" in out
    assert "[17:5692] -A FORWARD -j VZTRAFFIC-FORWARD" in out
    assert "--dport 25" not in out


def test_rules_sync_on_a_synced_node_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    runner = managed_runner()
    assert cli.main(["--config", LAB, "rules", "sync"], runner=runner) == 0
    assert "(0 changes)" in capsys.readouterr().out
    assert not any(argv[0].endswith("-restore") for argv, _ in runner.calls)


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = cli.main(["--config", str(path), "check-config"])
    return code, capsys.readouterr().err.replace(f"{path}: ", "")


def test_a_plain_number_veid_is_still_a_veid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, capsys, "containers: {static: [{veid: 101}]}\n")[0] == 0


def test_a_negative_request_limit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--web.max-requests", "-5", "check-config"])
    assert stop.value.code == 2
    assert "argument --web.max-requests: '-5' is not a whole number of 0 or more" in capsys.readouterr().err


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
