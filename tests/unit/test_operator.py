"""A new operator's first hour: units, ranges, errors that name the culprit, docs that match the code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vz_traffic_exporter import cli

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
