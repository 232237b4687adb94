from __future__ import annotations

import pytest

from tests.conftest import FIXTURES, ReplayRunner, fixture_text
from vz_traffic_exporter.config import load
from vz_traffic_exporter.netfilter.nftables import Current, parse_table, readings
from vz_traffic_exporter.rules.nftables import NftablesRules, desired, plan
from vz_traffic_exporter.runner import CommandError

CLASSES = load(str(FIXTURES / "lab.yaml")).classes
IPS = ["192.0.2.11", "2001:db8::b", "192.0.2.12", "2001:db8::c"]
LISTING = ("nft", "-j", "list", "table", "inet", "vz_traffic")


def live() -> Current:
    """The table as captured in a lab after a sync and some traffic."""
    return parse_table(fixture_text("cmd/nft-j-list-table-vz_traffic.json"))


def test_the_captured_table_is_read_per_address_class_and_direction() -> None:
    got = {(r.direction, r.klass, r.ip): (r.packets, r.bytes) for r in readings(live())}
    assert len(got) == 16  # 4 addresses x 2 classes x 2 directions
    assert got[("out", 1, "192.0.2.11")] == (10, 1280)  # to the class-1 peer
    assert got[("out", 0, "2001:db8::b")] == (5, 440)  # to the class-0 hole inside class 1
    assert got[("in", 0, "192.0.2.12")] == (4, 4112)
    assert sum(p for p, _ in got.values()) == 19
    assert {r.epoch for r in readings(live())} == {live().handle}


def test_the_captured_table_is_in_sync_with_its_configuration() -> None:
    assert plan(live(), desired(IPS, CLASSES, True)) == []


def test_a_new_table_is_one_transaction_with_disjoint_class_ranges() -> None:
    lines = plan(Current(), desired(IPS[:2], CLASSES, True))
    assert lines[0] == "add table inet vz_traffic"
    assert "add element inet vz_traffic out4_1 { 192.0.2.11 }" in lines
    structure = lines[-1]
    # class 1 is 198.51.100.0/24 but its upper half is a class-0 hole
    assert "elements = { 198.51.100.0-198.51.100.127 : goto cnt_out4_1 }" in structure
    assert "type filter hook input priority filter - 5; policy accept;" in structure
    without_host = plan(Current(), desired(IPS[:2], CLASSES, False))[-1]
    assert "hook input" not in without_host and "hook output" not in without_host


def test_adding_and_removing_addresses_only_touches_set_elements() -> None:
    lines = plan(live(), desired([*IPS[1:], "192.0.2.13"], CLASSES, True))
    assert all(line.startswith(("add element", "delete element")) for line in lines)
    assert "delete element inet vz_traffic out4_1 { 192.0.2.11 }" in lines
    assert "add element inet vz_traffic in4_0 { 192.0.2.13 }" in lines
    assert len(lines) == 8  # a delete and an add in each IPv4 set: 2 classes x 2 directions
    assert not any("6_" in line for line in lines)


def test_a_class_change_rebuilds_maps_and_chains_but_keeps_the_counting_sets() -> None:
    only_zero = load(str(FIXTURES / "kernel.yaml")).classes
    lines = plan(live(), desired(IPS, only_zero, True))
    assert lines[0] == "flush table inet vz_traffic"
    assert "delete chain inet vz_traffic forward" in lines
    assert not any(line.startswith("delete set inet vz_traffic out4_0") for line in lines)
    assert lines[-1].startswith("table inet vz_traffic {")


def test_a_missing_table_reads_as_nothing_and_remove_does_nothing() -> None:
    missing = CommandError(LISTING, 1, "Error: No such file or directory\nlist table inet vz_traffic")
    rules = NftablesRules(ReplayRunner({LISTING: missing}, installed=("nft",)))
    assert rules.read() == (Current(), [])
    assert rules.remove() == 0


def test_other_nft_errors_are_errors() -> None:
    broken = CommandError(LISTING, 1, "Error: Operation not permitted")
    with pytest.raises(CommandError):
        NftablesRules(ReplayRunner({LISTING: broken}, installed=("nft",))).read()


@pytest.mark.parametrize(
    ("installed", "nft_works", "chosen"),
    [
        (("nft", "iptables", "ip6tables"), True, "nftables"),
        (("nft", "iptables", "ip6tables"), False, "iptables"),  # nft present but not permitted
        (("iptables", "ip6tables"), False, "iptables"),
        ((), False, None),
    ],
)
def test_backend_auto_prefers_nftables_where_nft_works(
    installed: tuple[str, ...], nft_works: bool, chosen: str | None
) -> None:
    from vz_traffic_exporter.exporter import Exporter

    tables = "" if nft_works else CommandError(("nft", "list", "tables"), 1, "Operation not permitted")
    runner = ReplayRunner({("nft", "list", "tables"): tables}, installed=installed)
    exporter = Exporter(load(str(FIXTURES / "lab.yaml")), runner, procfs=str(FIXTURES / "empty"))
    assert exporter.backend_name() == chosen


def test_an_element_showing_the_same_gives_the_same_reading_object() -> None:
    text = fixture_text("cmd/nft-j-list-table-vz_traffic.json")
    made: dict = {}  # type: ignore[type-arg]
    first = readings(parse_table(text), made)
    again = readings(parse_table(text), made)
    assert len(again) == 16 and all(a is b for a, b in zip(first, again))
    grown = text.replace('"packets": 10, "bytes": 1280', '"packets": 11, "bytes": 1408', 1)
    assert grown != text
    third = readings(parse_table(grown), made)
    changed = [b for a, b in zip(again, third) if a is not b]
    assert [(r.direction, r.klass, r.ip, r.packets, r.bytes) for r in changed] == [
        ("out", 1, "192.0.2.11", 11, 1408)
    ]
