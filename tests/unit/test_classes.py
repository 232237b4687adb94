from __future__ import annotations

import ipaddress

import pytest

from vz_traffic_exporter.discovery.classes import ClassTable, NetworkClass

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
