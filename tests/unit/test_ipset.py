from __future__ import annotations

from tests.conftest import FIXTURES, fixture_text
from vz_traffic_exporter.config import load
from vz_traffic_exporter.netfilter.ipset import SaveReader, parse_ipset_save, readings
from vz_traffic_exporter.netfilter.iptables_save import SavedRule, SavedTable
from vz_traffic_exporter.rules.ipset import desired, plan_rules, plan_sets

CLASSES = load(str(FIXTURES / "lab.yaml")).classes
IPS = ["192.0.2.11", "2001:db8::b", "192.0.2.12", "2001:db8::c"]
STAMP = 1795321295632573124  # the comment of every element in the capture


def captured() -> dict:  # type: ignore[type-arg]
    return parse_ipset_save(fixture_text("cmd/ipset-save.txt"))


def test_the_captured_sets_are_read_per_address_class_and_direction() -> None:
    got = {(r.direction, r.klass, r.ip): (r.packets, r.bytes, r.epoch) for r in readings(captured())}
    assert len(got) == 16
    assert got[("out", 1, "192.0.2.11")] == (10, 1280, STAMP)
    assert got[("out", 0, "2001:db8::b")] == (5, 440, STAMP)  # the class-0 hole inside class 1
    assert got[("in", 0, "192.0.2.12")] == (4, 4112, STAMP)
    assert sum(p for p, _, _ in got.values()) == 19


def test_a_reader_hands_back_the_same_reading_for_an_unchanged_line_only() -> None:
    text = fixture_text("cmd/ipset-save.txt")
    reader = SaveReader()
    first_sets, first = reader.read(text)
    grown = text.replace("192.0.2.11 packets 10 bytes 1280", "192.0.2.11 packets 11 bytes 1408", 1)
    assert grown != text
    sets, again = reader.read(grown)
    assert first_sets == captured()
    assert sets["vztraffic4-out-1"].elements["192.0.2.11"][:2] == (11, 1408)
    assert [r.ip for r in again] == [r.ip for r in first]
    changed = [(a, b) for a, b in zip(first, again) if a is not b]
    assert [(b.ip, b.packets, b.bytes) for _, b in changed] == [("192.0.2.11", 11, 1408)]
    assert [r for r in again if r not in first] == [b for _, b in changed]
    assert readings(sets) == again  # the same values as a parse from scratch


def test_the_captured_sets_are_in_sync_and_class_networks_are_disjoint() -> None:
    want = desired(IPS, CLASSES, True)
    assert want.nets == {
        "vztraffic4-net-1": frozenset({"198.51.100.0/25"}),  # the /24 minus its class-0 upper half
        "vztraffic6-net-1": frozenset({"2001:db8:100::/49"}),
    }
    assert plan_sets(captured(), want, 7) == ([], [])


def test_addresses_change_in_place_and_counting_sets_are_never_re_created() -> None:
    lines, destroy = plan_sets(captured(), desired([*IPS[1:], "192.0.2.13"], CLASSES, True), 7)
    assert destroy == []
    assert not any(line.startswith(("create", "swap", "flush")) for line in lines)
    assert "del vztraffic4-out-1 192.0.2.11" in lines
    assert 'add vztraffic4-in-0 192.0.2.13 packets 0 bytes 0 comment "7"' in lines
    assert len(lines) == 8


def test_new_class_networks_are_filled_aside_and_swapped_in() -> None:
    from vz_traffic_exporter.config import validate

    wider = validate(
        {
            "network_classes": [
                {"id": 1, "name": "peering", "networks": ["198.51.100.0/24", "203.0.113.0/24"]}
            ]
        },
        "test",
    ).classes
    lines, _ = plan_sets(captured(), desired(IPS, wider, True), 7)
    assert lines[0].startswith("create vztraffic4-net-1-new hash:net family inet")
    assert lines[-2:] == ["swap vztraffic4-net-1-new vztraffic4-net-1", "destroy vztraffic4-net-1-new"]
    assert "add vztraffic4-net-1-new 203.0.113.0/24" in lines


def test_rules_are_a_constant_few_and_removal_leaves_foreign_rules() -> None:
    want = desired([f"198.18.{i // 250}.{i % 250 + 1}" for i in range(1000)], CLASSES, True)
    assert want.chains["ipv4"]["VZTSET-OUT"] == (
        "-m set --match-set vztraffic4-net-1 dst -m set --match-set vztraffic4-out-1 src -j RETURN",
        "-m set --match-set vztraffic4-out-0 src -j RETURN",
    )
    foreign = SavedRule("FORWARD", "-p tcp -m tcp --dport 25 -j DROP")
    empty = SavedTable("filter", {"INPUT": "ACCEPT", "FORWARD": "ACCEPT", "OUTPUT": "ACCEPT"}, [foreign])
    lines = [op.restore_line() for op in plan_rules(empty, want.chains["ipv4"], want.jumps["ipv4"])]
    assert sum(line.startswith("-A ") for line in lines) == 8  # 2 + 2 counting, 2 + 1 + 1 hooks
    assert [line for line in lines if line.startswith("-I ")] == [
        "-I FORWARD 1 -j VZTSET-FORWARD",
        "-I INPUT 1 -j VZTSET-INPUT",
        "-I OUTPUT 1 -j VZTSET-OUTPUT",
    ]
    synced = SavedTable(
        "filter",
        {**empty.policies, **dict.fromkeys(want.chains["ipv4"], "-")},
        [SavedRule(hook, f"-j VZTSET-{hook}") for hook in ("FORWARD", "INPUT", "OUTPUT")]
        + [foreign]
        + [SavedRule(chain, spec) for chain, specs in want.chains["ipv4"].items() for spec in specs],
    )
    assert plan_rules(synced, want.chains["ipv4"], want.jumps["ipv4"]) == []
    removal = [op.restore_line() for op in plan_rules(synced, {}, ())]
    assert "-D FORWARD -j VZTSET-FORWARD" in removal and "-X VZTSET-OUT" in removal
    assert not any("dport" in line for line in removal)
