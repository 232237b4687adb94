from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vz_traffic_exporter.classes import ClassTable, NetworkClass, nesting
from vz_traffic_exporter.config import load

N = ipaddress.ip_network
TABLE = ClassTable.build(
    [
        NetworkClass(1, "peering", (N("198.51.100.0/24"), N("2001:db8:100::/48"))),
        NetworkClass(2, "wide", (N("198.51.0.0/16"),)),
        NetworkClass(3, "narrow", (N("198.51.100.64/26"),)),
        NetworkClass(0, "local", (N("198.51.100.64/27"), N("2001:db8:100:8000::/49"))),
    ]
)


@pytest.mark.parametrize(
    ("address", "klass"),
    [
        ("198.51.100.10", 1),  # in class 1 only
        ("198.51.7.1", 2),  # in the /16 only
        ("198.51.100.100", 3),  # /26 beats /24 and /16: longest prefix wins
        ("198.51.100.70", 0),  # class-0 /27 wins over the longer-or-shorter class 3 /26
        ("203.0.113.1", 0),  # in no network
        ("2001:db8:100::1", 1),
        ("2001:db8:100:8000::1", 0),  # class-0 hole inside class 1
        ("2001:db8:200::1", 0),
    ],
)
def test_openvz_matching_rule(address: str, klass: int) -> None:
    assert TABLE.classify(ipaddress.ip_address(address)) == klass


def test_class_zero_is_always_present() -> None:
    assert ClassTable.build([NetworkClass(4, "x")]).ids() == (0, 4)


def test_first_match_order_puts_class_zero_first_then_longest_prefix() -> None:
    order = [(str(n), c) for n, c in TABLE.ordered_networks(4)]
    assert order == [
        ("198.51.100.64/27", 0),
        ("198.51.100.64/26", 3),
        ("198.51.100.0/24", 1),
        ("198.51.0.0/16", 2),
    ]


def test_disjoint_ranges_of_nested_classes_with_a_hole() -> None:
    got = [(str(a), str(b), k) for a, b, k in TABLE.disjoint_ranges(4)]
    assert got == [
        ("198.51.0.0", "198.51.99.255", 2),
        ("198.51.100.0", "198.51.100.63", 1),
        ("198.51.100.96", "198.51.100.127", 3),  # .64-.95 is the class-0 hole
        ("198.51.100.128", "198.51.100.255", 1),
        ("198.51.101.0", "198.51.255.255", 2),
    ]
    assert [(str(a), str(b), k) for a, b, k in TABLE.disjoint_ranges(6)] == [
        ("2001:db8:100::", "2001:db8:100:7fff:ffff:ffff:ffff:ffff", 1)
    ]
    assert ClassTable.build([]).disjoint_ranges(4) == []


# Any class table, any address: the ranges give the address the class that
# the first-match rule gives it (class 0 when no range holds it).
networks = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.builds(
            lambda addr, plen: ipaddress.ip_network((addr, plen), strict=False),
            st.integers(0xC6336400, 0xC63364FF),  # around 198.51.100.0/24
            st.integers(22, 32),
        ),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(networks, st.lists(st.integers(0xC6336000, 0xC63367FF), min_size=1, max_size=20))
def test_disjoint_ranges_agree_with_classify(
    pairs: list[tuple[int, ipaddress.IPv4Network]], addrs: list[int]
) -> None:
    by_class: dict[int, list[ipaddress.IPv4Network]] = {}
    for klass, net in pairs:
        by_class.setdefault(klass, []).append(net)
    table = ClassTable.build([NetworkClass(k, f"c{k}", tuple(nets)) for k, nets in by_class.items()])
    ranges = table.disjoint_ranges(4)
    for (_, last, _), (first, _, _) in zip(ranges, ranges[1:]):
        assert last < first  # disjoint and in order
    for value in addrs:
        addr = ipaddress.IPv4Address(value)
        found = [k for first, last, k in ranges if first <= addr <= last]
        assert found == ([table.classify(addr)] if table.classify(addr) else [])


def _table(*classes: tuple[int, list[str]]) -> ClassTable:
    return ClassTable.build(
        NetworkClass(i, f"c{i}", tuple(ipaddress.ip_network(n) for n in nets)) for i, nets in classes
    )


@pytest.mark.parametrize(
    ("classes", "parent", "underivable"),
    [
        # The typical node: class 1 everything, class 2 a peering network inside it.
        (((1, ["0.0.0.0/0"]), (2, ["198.51.100.0/24"])), {2: 1}, set()),
        # A chain of three.
        (((1, ["0.0.0.0/0"]), (2, ["198.51.100.0/24"]), (3, ["198.51.100.128/25"])), {2: 1, 3: 2}, set()),
        # Two siblings inside one.
        (((1, ["198.51.0.0/16"]), (2, ["198.51.100.0/24"]), (3, ["198.51.101.0/24"])), {2: 1, 3: 1}, set()),
        # Disjoint classes need nothing.
        (((1, ["198.51.100.0/24"]), (2, ["203.0.113.0/24"])), {}, set()),
        # Class 1 holds class 2's network but also has a network inside it: the longest prefix
        # gives 198.19.2.0/24 to class 1, which no subtraction of counters can tell.
        (((1, ["198.18.0.0/15", "198.19.2.0/24"]), (2, ["198.19.0.0/16"])), {}, {1, 2}),
        # Class 2 only partly inside class 1.
        (((1, ["198.51.100.0/24"]), (2, ["198.51.100.0/25", "203.0.113.0/24"])), {}, {1, 2}),
        # A class-0 hole: Virtuozzo 9 counts no class 0, so it is in class 1's count (said, not hidden).
        (((1, ["198.51.100.0/24"]), (0, ["198.51.100.128/25"]), (2, ["203.0.113.0/24"])), {}, set()),
        # The users' guide file: class 2 inside class 1 (everything), a class-1 hole inside class 2.
        (((1, ["0.0.0.0/0", "198.19.16.0/24"]), (2, ["198.18.0.0/15"])), {}, {1, 2}),
    ],
)
def test_nesting_of_overlapping_classes(
    classes: tuple[tuple[int, list[str]], ...], parent: dict[int, int], underivable: set[int]
) -> None:
    found = nesting(_table(*classes), 4)
    assert (found.parent, set(found.underivable)) == (parent, underivable)
    zero = [net for k, nets in classes if k == 0 for net in nets]
    assert {k: [str(n) for n in v] for k, v in found.zero_inside.items()} == ({1: zero} if zero else {})
    assert found.children(1) == sorted(k for k, p in parent.items() if p == 1)


@pytest.mark.slow
def test_a_classes_file_of_200000_lines_is_merged_in_linear_time(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    lines = [f"{1 + i % 15} 198.{18 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32" for i in range(131072)]
    lines += [f"{1 + i % 15} 2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64" for i in range(68928)]
    classes = tmp_path / "networks_classes"
    classes.write_text("\n".join(lines) + "\n")
    start = time.process_time()  # CPU time: the other tests running beside it take no share of it
    config = load(write_config(f"networks_classes_file: {classes}\n"))
    took = time.process_time() - start
    assert sum(len(k.networks) for k in config.classes.classes) == 200_000
    assert took < 15, took  # it took minutes of CPU when each line copied its class's list
