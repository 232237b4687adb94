from __future__ import annotations

import ipaddress

import pytest

from tests.conftest import FIXTURES, fixture_text
from vz_traffic_exporter.classes import parse_networks_classes
from vz_traffic_exporter.config import ConfigError, load


def test_shipped_default_file() -> None:
    entries, problems = parse_networks_classes(fixture_text("etc/vz/conf/networks_classes"))
    assert [(k, str(n)) for k, n in entries] == [(1, "0.0.0.0/0"), (1, "::/0")]
    assert problems == []


@pytest.mark.parametrize(
    ("address", "klass"),
    [
        ("192.0.2.9", 0),
        ("198.51.100.20", 1),
        ("198.51.100.99", 2),
        ("203.0.113.5", 1),
        ("fe80::1", 0),
        ("2001:db8:2::1", 2),
        ("2001:db8:2:0:3333::1", 1),
        ("2001:db8:9::1", 1),
    ],
)
def test_guide_example_classifies_with_openvz_rules(write_config, address: str, klass: int) -> None:  # type: ignore[no-untyped-def]
    path = FIXTURES / "etc/vz/conf/networks_classes.doc"
    cfg = load(write_config(f"networks_classes_file: {path}\n"))
    assert cfg.classes.classify(ipaddress.ip_address(address)) == klass


def test_merged_with_configured_classes(write_config) -> None:  # type: ignore[no-untyped-def]
    path = FIXTURES / "etc/vz/conf/networks_classes.doc"
    cfg = load(
        write_config(
            f"networks_classes_file: {path}\n"
            "network_classes: [{id: 3, name: peering, networks: [203.0.113.0/24]}]\n"
        )
    )
    assert cfg.classes.ids() == (0, 1, 2, 3)
    assert cfg.classes.classify(ipaddress.ip_address("203.0.113.5")) == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1 192.0.2.0\n", "line 1: expected '<class> <address>/<prefix>': '1 192.0.2.0'"),
        ("  # indented comment\n", "line 1: expected '<class> <address>/<prefix>': '# indented comment'"),
        ("16 192.0.2.0/24\n", "line 1: class 16 is above 15"),
        ("\n2 192.0.2.300/24\n", "line 2: '192.0.2.300' is not an IP address"),
    ],
)
def test_bad_lines_are_reported_with_their_line(text: str, problem: str) -> None:
    assert parse_networks_classes(text)[1] == [problem]


def test_prefix_is_clamped_and_host_bits_masked() -> None:
    entries, _ = parse_networks_classes("1 192.0.2.77/40\n2 198.51.100.9/24\n")
    assert [(k, str(n)) for k, n in entries] == [(1, "192.0.2.77/32"), (2, "198.51.100.0/24")]


def test_config_error_names_file_and_line(write_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "networks_classes"
    bad.write_text("1 0.0.0.0/0\n99 192.0.2.0/24\n")
    with pytest.raises(ConfigError) as err:
        load(write_config(f"networks_classes_file: {bad}\n"))
    assert err.value.problems == [f"networks_classes_file: {bad}: line 2: class 99 is above 15"]
