from __future__ import annotations

import pytest

from tests.conftest import FIXTURES, fixture_text
from vz_traffic_exporter.discovery import merge
from vz_traffic_exporter.discovery.prlctl import parse_prlctl_json
from vz_traffic_exporter.discovery.veinfo import parse_veinfo
from vz_traffic_exporter.discovery.vzlist import parse_vzlist_json
from vz_traffic_exporter.model import Container, Inventory, kernel_veid
from vz_traffic_exporter.sources.interfaces import owner_by_name, read_interface
from vz_traffic_exporter.sources.nft_counters import ctid_of_table, parse_nft_counters
from vz_traffic_exporter.sources.venetstat import parse_venetstat
from vz_traffic_exporter.sources.vznetstat import parse_vznetstat

UUID = "fbb30afa-e770-4081-9d9e-6b9c262eb091"


def cts(found: list[Container]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.veid, c.name, c.ips) for c in found]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("proc/vz/veinfo", [(UUID, "", ("192.0.2.110",)), ("101", "", ("2001:db8::65", "192.0.2.101"))]),
        (
            "proc-legacy/vz/veinfo",
            [("102", "", ("192.0.2.103", "192.0.2.102")), ("101", "", ("2001:db8::65", "192.0.2.101"))],
        ),
    ],
)
def test_veinfo_variants(fixture: str, expected: list[object]) -> None:
    assert cts(parse_veinfo(fixture_text(fixture))) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("     fbb30afa-e770-4081-9d9e-6b9c262eb091 0    12\n         0 0   512\n", [(UUID, "", ())]),  # VZ9
    ],
)
def test_veinfo_edge_cases(text: str, expected: list[object]) -> None:
    assert cts(parse_veinfo(text)) == expected


def test_veinfo_bad_line_names_the_line() -> None:
    with pytest.raises(ValueError, match=r"veinfo:2: not a veinfo line"):
        parse_veinfo("       101     0    42\ngarbage\n")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "cmd/vzlist-a-j-legacy.json",
            [
                ("101", "web", ("192.0.2.101", "2001:db8::65")),
                ("102", "", ("192.0.2.102", "192.0.2.103")),
                ("103", "", ()),
            ],
        ),
        (
            "cmd/vzlist-a-j-vz7.json",
            [
                ("101", "web", ("192.0.2.101", "2001:db8::65")),
                (UUID, "shop", ("192.0.2.110", "198.51.100.10")),
                ("103", "", ()),
            ],
        ),
        (
            "cmd/prlctl-list-a-j.json",
            [
                ("101", "MyCT", ("203.0.113.101", "2001:db8::65")),
                (UUID, "shop", ("192.0.2.110", "198.51.100.10")),
                ("b2de86d9-6539-4ccc-9120-928b33ed31b9", "MyVM", ("203.0.113.1",)),
                ("7f4904ad-1111-2222-3333-444455556666", "EmptyCT", ()),
            ],
        ),
    ],
)
def test_vzlist_and_prlctl(fixture: str, expected: list[object]) -> None:
    parse = parse_prlctl_json if "prlctl" in fixture else parse_vzlist_json
    assert cts(parse(fixture_text(fixture))) == expected


def test_vzlist_empty_and_broken() -> None:
    assert parse_vzlist_json("[]\n") == []
    with pytest.raises(ValueError, match=r"entry 0: '192\.0\.2\.300' is not an IP address"):
        parse_vzlist_json('[{"ctid": 5, "ip": ["192.0.2.300"]}]')
    with pytest.raises(ValueError, match="not JSON"):
        parse_vzlist_json("Container(s) not found")


@pytest.mark.parametrize(("ctid", "veid"), [("101", 101), (UUID, 2075331322), ("web", None)])
def test_kernel_veid(ctid: str, veid: object) -> None:
    assert kernel_veid(ctid) == veid


def test_uuid_veids_map_back_to_their_ctid() -> None:
    inv = merge([[Container(UUID), Container("101")]])
    assert (inv.ctid_of("2075331322"), inv.ctid_of("101"), inv.ctid_of("0"), inv.ctid_of("555")) == (
        UUID,
        "101",
        "0",
        "555",
    )
    assert Inventory.empty().ctid_of("2075331322") == "2075331322"


def by_key(readings: list) -> dict[tuple[object, ...], tuple[object, object]]:  # type: ignore[type-arg]
    return {(r.kernel_id, r.klass, r.direction, r.family): (r.bytes, r.packets) for r in readings}


def test_venetstat_padded_columns_and_64_bit_values() -> None:
    got = by_key(parse_venetstat(fixture_text("proc/vz/venetstat"), "ipv4"))
    assert len(got) == 4 * 16 * 2
    assert got[("0", 0, "in", "ipv4")] == (566093064, None)
    assert got[("101", 1, "out", "ipv4")] == (25165824000, None)  # above 2**32
    assert got[("2075331322", 1, "in", "ipv4")] == (12884901893, None)
    assert got[("101", 2, "in", "ipv4")] == (1048576, None)
    assert got[("102", 15, "out", "ipv4")] == (0, None)
    got6 = by_key(parse_venetstat(fixture_text("proc/vz/venetstat_v6"), "ipv6"))
    assert got6[("101", 1, "out", "ipv6")] == (654321, None)


def test_venetstat_empty_and_short_lines() -> None:
    assert parse_venetstat("", "ipv4") == []
    with pytest.raises(ValueError, match=r"venetstat:1: not 16 in/out pairs"):
        parse_venetstat("101 1/2 3/4\n", "ipv4")


def test_vznetstat_rows_and_32_bit_packets() -> None:
    got = by_key(parse_vznetstat(fixture_text("cmd/vznetstat-4-a.txt"), "ipv4"))
    assert got[("101", 1, "out", "ipv4")] == (25165824000, 17000000)
    assert got[(UUID, 1, "in", "ipv4")] == (12884901893, 4294967295)
    assert len(got) == 9 * 2


def test_vznetstat_old_ctid_header_and_rounded_values() -> None:
    text = (
        "CTID    Net.Class     Input(bytes) Input(pkts)        Output(bytes) Output(pkts)\n"
        "101        1                  5000          10                 7000          12\n"
    )
    assert by_key(parse_vznetstat(text, "ipv4")) == {
        ("101", 1, "in", "ipv4"): (5000, 10),
        ("101", 1, "out", "ipv4"): (7000, 12),
    }
    with pytest.raises(ValueError, match="vznetstat:2"):
        parse_vznetstat("UUID x\n101  0  9K  78  12K  71\n", "ipv4")


def test_nft_counters_of_ve_tables_only() -> None:
    got = by_key(parse_nft_counters(fixture_text("cmd/nft-j-list-counters.json")))
    assert got == {
        ("101", 1, "out", "ipv4"): (1280, 10),
        ("101", 1, "in", "ipv4"): (312, 4),
        ("101", 1, "out", "ipv6"): (296, 2),
        ("101", 1, "in", "ipv6"): (0, 0),
        (UUID, 1, "out", "ipv4"): (12884901893, 4294967296),
        (UUID, 1, "in", "ipv4"): (60, 1),
        (UUID, 2, "out", "ipv4"): (180, 3),
        (UUID, 2, "in", "ipv4"): (0, 0),
    }


def test_nft_counters_take_their_tables_handle_as_epoch() -> None:
    readings = parse_nft_counters(fixture_text("cmd/nft-j-list-ruleset-netdev.json"))
    assert {(r.kernel_id, r.epoch) for r in readings} == {("101", 3), (UUID, 4)}
    assert by_key(readings) == by_key(parse_nft_counters(fixture_text("cmd/nft-j-list-counters.json")))
    # Without its tables (nft -j list counters), no epoch.
    assert {r.epoch for r in parse_nft_counters(fixture_text("cmd/nft-j-list-counters.json"))} == {None}


@pytest.mark.parametrize(
    ("table", "ctid"), [("ve_101", "101"), ("ve_fbb30afae77040819d9e6b9c262eb091", UUID), ("filter", None)]
)
def test_nft_table_names(table: str, ctid: object) -> None:
    assert ctid_of_table(table) == ctid


def test_host_side_interface_directions_are_swapped() -> None:
    got = {
        (r.interface, r.direction): (r.packets, r.bytes)
        for r in read_interface(str(FIXTURES / "sys"), "veth101.0")
    }
    assert got == {("veth101.0", "out"): (40, 5000), ("veth101.0", "in"): (70, 90000)}
    assert (owner_by_name("veth101.0"), owner_by_name("veth42ffa4e6"), owner_by_name("eth0")) == (
        "101",
        None,
        None,
    )
