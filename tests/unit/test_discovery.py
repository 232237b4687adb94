"""Discovery: what real and broken vzlist and prlctl print, and the names that reach the labels.

The real samples are other people's captures, read where they are kept
(``../shared/real-samples``), never copied into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ReplayRunner
from vz_traffic_exporter import cli
from vz_traffic_exporter.discovery.prlctl import ARGV as PRLCTL
from vz_traffic_exporter.discovery.prlctl import parse_prlctl_json
from vz_traffic_exporter.discovery.vzlist import ARGV as VZLIST
from vz_traffic_exporter.discovery.vzlist import parse_vzlist_json

REAL = Path(__file__).resolve().parents[3] / "shared" / "real-samples"


def real_sample(relative: str) -> str:
    path = REAL / relative
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared real samples sit beside the project)")
    return path.read_text()


def info_names(text: str) -> dict[str, str]:
    """veid -> name of vz_traffic_container_info, parsed the way Prometheus parses it."""
    return {
        s.labels["veid"]: s.labels["name"]
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "vz_traffic_container_info"
    }


def dump(capsys: pytest.CaptureFixture[str], write_config, runner: ReplayRunner, source: str) -> str:  # type: ignore[no-untyped-def]
    config = write_config(f"containers: {{discovery: [{source}]}}\nnetfilter: {{backend: 'off'}}\n")
    argv = ["--config", config, "dump", "--path.procfs=/nonexistent", "--path.sysfs=/nonexistent"]
    assert cli.main(argv, runner=runner) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "argv", "listing"),
    [
        ("vzlist", VZLIST, [{"ctid": "10\udcff1", "name": "we\ud800b", "ip": ["192.0.2.11"]}]),
        ("prlctl", PRLCTL, [{"envid": "10\udcff1", "name": "we\ud800b", "ip": "192.0.2.11 "}]),
    ],
)
def test_a_lone_surrogate_in_a_name_or_ctid_is_written_as_a_replacement_character(
    capsys: pytest.CaptureFixture[str],
    write_config,
    source: str,
    argv: tuple[str, ...],
    listing: list[object],
) -> None:  # type: ignore[no-untyped-def]
    listing = [*listing, {"ctid": "102", "envid": "102", "name": "db", "ip": "192.0.2.12"}]
    if source == "vzlist":
        listing[1]["ip"] = ["192.0.2.12"]  # type: ignore[index]
    runner = ReplayRunner({argv: json.dumps(listing)}, installed=(source,))
    text = dump(capsys, write_config, runner, source)
    assert info_names(text) == {"10\ufffd1": "we\ufffdb", "102": "db"}
    assert f'vz_traffic_source_up{{source="{source}"}} 1.0' in text


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ('a\\b"c\nd', 'a\\\\b\\"c\\nd'),
        ("\\n", "\\\\n"),
        ("web \u00e9t\u00e9 \U0001f600", "web \u00e9t\u00e9 \U0001f600"),
        ("\udcff", "\ufffd"),
    ],
)
def test_label_values_are_escaped_exactly(
    capsys: pytest.CaptureFixture[str], write_config, name: str, written: str
) -> None:  # type: ignore[no-untyped-def]
    runner = ReplayRunner(
        {VZLIST: json.dumps([{"ctid": 101, "name": name, "ip": []}])}, installed=("vzlist",)
    )
    text = dump(capsys, write_config, runner, "vzlist")
    assert f'vz_traffic_container_info{{name="{written}",veid="101"}} 1\n' in text
    assert info_names(text)["101"] == name.replace("\udcff", "\ufffd")


@pytest.mark.parametrize("parse", [parse_vzlist_json, parse_prlctl_json])
def test_a_container_without_a_name_has_an_empty_name(parse) -> None:  # type: ignore[no-untyped-def]
    # OpenVZ 7 vzlist (vzlist.c print_name) and prlctl (handle_empty_str) print "-"; legacy vzlist null.
    listing = [
        {"ctid": "101", "envid": "101", "name": "-", "ip": []},
        {"ctid": "102", "envid": "102", "name": None, "ip": []},
        {"ctid": "103", "envid": "103", "name": "-web-", "ip": []},
    ]
    assert [c.name for c in parse(json.dumps(listing))] == ["", "", "-web-"]


def test_the_real_legacy_vzlist_sample() -> None:
    found = parse_vzlist_json(real_sample("vzlist-json/diamond-openvz-collector-fixture.txt"))
    assert found and all(c.veid.isdigit() and c.name == "" for c in found)
    assert found[0].veid == "113"
