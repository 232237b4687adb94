from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FIXTURES, managed_runner
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
