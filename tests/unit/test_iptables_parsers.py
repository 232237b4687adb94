from __future__ import annotations

import pytest

from tests.conftest import fixture_text
from vz_traffic_exporter.netfilter.iptables import (
    ManagedReadings,
    adopted_mark,
    adopted_readings,
    epochs,
    managed_readings,
    parse_adopted_spec,
)
from vz_traffic_exporter.netfilter.iptables_save import (
    ParseError,
    SavedRule,
    SavedTable,
    SaveParser,
    parse_iptables_save,
)
from vz_traffic_exporter.netfilter.layout import parse_epoch_spec
from vz_traffic_exporter.netfilter.xtables import LEGACY, NFT, parse_version


def test_parse_save_keeps_chains_rules_and_counters() -> None:
    table = parse_iptables_save(fixture_text("cmd/iptables-save-c.txt"))["filter"]
    assert table.policies["FORWARD"] == "ACCEPT"
    assert table.policies["VZTRAFFIC-OUT-1"] == "-"
    rule = table.chain_rules("FORWARD")[1]
    assert (rule.spec, rule.packets, rule.bytes) == ("-i vpeer -p tcp -m tcp --dport 25 -j DROP", 0, 0)


def test_parse_save_reports_the_bad_line() -> None:
    with pytest.raises(ParseError, match="line 3: malformed rule line"):
        parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n[1:2] -X INPUT\nCOMMIT\n")


def test_managed_readings_are_our_counting_rules_only() -> None:
    table = parse_iptables_save(fixture_text("cmd/iptables-save-c.txt"))["filter"]
    got = {(r.ip, r.klass, r.direction): (r.packets, r.bytes) for r in managed_readings(table)}
    assert got == {
        ("192.0.2.11", 0, "in"): (0, 0),
        ("192.0.2.12", 0, "in"): (4, 4112),
        ("192.0.2.11", 1, "in"): (0, 0),
        ("192.0.2.12", 1, "in"): (0, 0),
        ("192.0.2.11", 0, "out"): (5, 376),
        ("192.0.2.12", 0, "out"): (0, 0),
        ("192.0.2.11", 1, "out"): (10, 1280),
        ("192.0.2.12", 1, "out"): (0, 0),
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("-s 192.0.2.11/32", ("out", "192.0.2.11")),
        ("-d 192.0.2.11/32", ("in", "192.0.2.11")),
        ("-s 192.0.2.12/32 -i v102", ("out", "192.0.2.12")),
        ("-d 2001:db8::b/128 -o eth0", ("in", "2001:db8::b")),
        ("-s 192.0.2.0/24", None),  # a network, not an address
        ("-s 192.0.2.11/32 -j ACCEPT", None),  # has a target
        ("-s 192.0.2.11/32 -d 203.0.113.1/32", None),
        ("-s 192.0.2.11/32 -p tcp", None),
        ("", None),
    ],
)
def test_adopted_rule_shapes(spec: str, expected: object) -> None:
    assert parse_adopted_spec(spec) == expected


def test_adopted_readings_from_wiki_style_rules_count_one_rule_per_address_and_direction() -> None:
    table = parse_iptables_save(fixture_text("cmd/iptables-save-c-adopted.txt"))["filter"]
    readings, duplicates = adopted_readings("ipv4", table, epoch=7)
    got = [(r.counter, r.ip, r.direction, r.packets, r.bytes, r.epoch) for r in readings]
    assert got == [
        (("adopted", "ipv4", "INPUT", "-s 192.0.2.12/32 -i v102", 0), "192.0.2.12", "out", 3, 114, 7),
        (("adopted", "ipv4", "FORWARD", "-s 192.0.2.11/32", 0), "192.0.2.11", "out", 10, 1280, 7),
        (("adopted", "ipv4", "FORWARD", "-d 192.0.2.11/32", 0), "192.0.2.11", "in", 4, 312, 7),
        (("adopted", "ipv4", "FORWARD", "-s 192.0.2.12/32", 0), "192.0.2.12", "out", 0, 0, 7),
        (("adopted", "ipv4", "FORWARD", "-d 192.0.2.12/32", 0), "192.0.2.12", "in", 0, 0, 7),
    ]
    # The same rule twice counts the same packets twice: the second is left out.
    assert [(r.chain, r.spec) for r in duplicates] == [("FORWARD", "-s 192.0.2.11/32")]


def test_two_shapes_of_rule_for_one_address_in_one_chain_count_once() -> None:
    table = parse_iptables_save(
        "*filter\n:FORWARD ACCEPT [0:0]\n[5:500] -A FORWARD -s 192.0.2.11/32\n"
        "[5:500] -A FORWARD -s 192.0.2.11/32 -o eth0\n[2:80] -A INPUT -s 192.0.2.11/32\nCOMMIT\n"
    )["filter"]
    readings, duplicates = adopted_readings("ipv4", table)
    assert [(r.counter[2], r.bytes) for r in readings] == [("FORWARD", 500), ("INPUT", 80)]
    assert [r.spec for r in duplicates] == ["-s 192.0.2.11/32 -o eth0"]


def test_adopted_marker_tells_a_zeroed_table() -> None:
    def table(marker: str) -> SavedTable:
        return parse_iptables_save(f"*filter\n:VZTRAFFIC-ADOPTED - [0:0]\n{marker}COMMIT\n")["filter"]

    spec = "-m comment --comment adopted-at-1700000000 -j RETURN"
    assert adopted_mark(table(f"[0:1] -A VZTRAFFIC-ADOPTED {spec}\n")) == (1700000000, False)
    assert adopted_mark(table(f"[0:0] -A VZTRAFFIC-ADOPTED {spec}\n")) == (1700000000, True)
    assert adopted_mark(table("")) is None


@pytest.mark.parametrize(
    ("text", "variant", "version"),
    [
        ("iptables v1.8.9 (nf_tables)\n", NFT, "1.8.9"),
        ("iptables v1.8.9 (legacy)\n", LEGACY, "1.8.9"),
        ("iptables v1.4.21\n", LEGACY, "1.4.21"),
    ],
)
def test_variant_detection(text: str, variant: str, version: str) -> None:
    xt = parse_version(text)
    assert (xt.variant, xt.version) == (variant, version)


def test_epoch_rules_give_each_counting_chain_its_epoch() -> None:
    assert parse_epoch_spec('-m comment --comment "VZTRAFFIC-OUT-1-at-5" -j RETURN') == ("VZTRAFFIC-OUT-1", 5)
    assert parse_epoch_spec("-m comment --comment VZTRAFFIC-FORWARD-at-5 -j RETURN") is None
    table = SavedTable(
        "filter",
        rules=[
            SavedRule("VZTRAFFIC-EPOCH", "-m comment --comment VZTRAFFIC-OUT-1-at-5 -j RETURN", 0, 1),
            SavedRule("VZTRAFFIC-EPOCH", "-m comment --comment VZTRAFFIC-IN-1-at-5 -j RETURN", 0, 0),
        ],
    )
    assert epochs(table, markers=True) == {"VZTRAFFIC-OUT-1": 5, "VZTRAFFIC-IN-1": 0}  # IN-1 was zeroed
    assert epochs(table, markers=False) == {"VZTRAFFIC-OUT-1": 5, "VZTRAFFIC-IN-1": 5}


def test_an_unchanged_rule_line_gives_the_same_reading_object() -> None:
    text = fixture_text("cmd/iptables-save-c.txt")
    parser = SaveParser()
    read = ManagedReadings("ipv4")
    first = read(parser.parse(text)["filter"], True)
    again = read(parser.parse(text)["filter"], True)
    assert first and all(a is b for a, b in zip(first, again))
    grown = text.replace("[10:1280] -A VZTRAFFIC-OUT-1 -s", "[11:1408] -A VZTRAFFIC-OUT-1 -s")
    assert grown != text
    third = read(parser.parse(grown)["filter"], True)
    assert third == managed_readings(parse_iptables_save(grown)["filter"], True, "ipv4")
    changed = [b for a, b in zip(again, third) if a is not b]
    assert [(r.ip, r.klass, r.direction, r.packets, r.bytes) for r in changed] == [
        ("192.0.2.11", 1, "out", 11, 1408)
    ]


def test_a_dump_that_differs_in_counters_only_is_read_as_its_counters() -> None:
    text = fixture_text("cmd/iptables-save-c.txt")
    parser = SaveParser()
    first = parser.parse(text)["filter"]
    grown = text.replace("[10:1280] -A VZTRAFFIC-OUT-1 -s", "[11:1408] -A VZTRAFFIC-OUT-1 -s")
    grown = grown.replace(":FORWARD ACCEPT [0:0]", ":FORWARD ACCEPT [5:300]")
    assert grown.count("\n") == text.count("\n") and ":FORWARD ACCEPT [5:300]" in grown
    second = parser.parse(grown)["filter"]
    assert second.shape is first.shape  # read as counters
    assert second == parse_iptables_save(grown)["filter"]
    assert [i for i, (a, b) in enumerate(zip(first.rules, second.rules)) if a is not b] == [
        next(i for i, r in enumerate(first.rules) if r.packets == 10 and r.chain == "VZTRAFFIC-OUT-1")
    ]
    assert parser.parse(grown)["filter"] is second  # nothing changed since


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[10:1280] -A VZTRAFFIC-OUT-1 -s 192.0.2.11", "[10:1280] -A VZTRAFFIC-OUT-1 -s 192.0.2.12"),
        (":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]"),
        ("[10:1280] -A VZTRAFFIC-OUT-1", "[10:1280] -A VZTRAFFIC-OUT-2"),
    ],
)
def test_a_dump_with_another_rule_or_chain_is_parsed_anew(old: str, new: str) -> None:
    text = fixture_text("cmd/iptables-save-c.txt")
    parser = SaveParser()
    first = parser.parse(text)["filter"]
    assert old in text
    changed = parser.parse(text.replace(old, new, 1))["filter"]
    assert changed.shape is not first.shape
    assert changed == parse_iptables_save(text.replace(old, new, 1))["filter"]


@pytest.mark.parametrize("counters", ["[18446744073709551616:0]", "[1:²]", "[-1:5]", "[1:2:3]"])
def test_bad_counters_in_a_dump_of_the_last_shape_name_their_line(counters: str) -> None:
    text = fixture_text("cmd/iptables-save-c.txt")
    parser = SaveParser()
    parser.parse(text)
    bad = text.replace("[10:1280] -A VZTRAFFIC-OUT-1", f"{counters} -A VZTRAFFIC-OUT-1", 1)
    line = bad.splitlines().index(next(x for x in bad.splitlines() if x.startswith(counters))) + 1
    with pytest.raises(ParseError, match=f"line {line}: "):
        parser.parse(bad)
