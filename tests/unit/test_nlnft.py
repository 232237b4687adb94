"""The netlink nftables reader's element decoding: built as the kernel writes them, and hostile ones."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.conftest import hostile_outcomes
from vz_traffic_exporter.netfilter import nlnft
from vz_traffic_exporter.netfilter.netlink import Unknown

NESTED, NET_ORDER = 0x8000, 0x4000


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def counter(packets: int, nbytes: int) -> bytes:
    data = attr(nlnft.COUNTER_BYTES | NET_ORDER, struct.pack(">Q", nbytes))
    data += attr(nlnft.COUNTER_PACKETS | NET_ORDER, struct.pack(">Q", packets))
    return attr(nlnft.EXPR_NAME, b"counter\0") + attr(nlnft.EXPR_DATA | NESTED, data)


def element(ip: str, packets: int, nbytes: int, listed: bool = False) -> bytes:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    key = attr(nlnft.ELEM_KEY | NESTED, attr(nlnft.DATA_VALUE, socket.inet_pton(family, ip)))
    if listed:  # NFTA_SET_ELEM_EXPRESSIONS: a list of one expression
        expr = attr(nlnft.ELEM_EXPRESSIONS | NESTED, attr(nlnft.LIST_ELEM | NESTED, counter(packets, nbytes)))
    else:
        expr = attr(nlnft.ELEM_EXPR | NESTED, counter(packets, nbytes))
    return attr(nlnft.LIST_ELEM | NESTED, key + expr)


def message(elements: list[bytes]) -> bytes:
    body = attr(nlnft.LIST_TABLE, b"vz_traffic\0") + attr(nlnft.LIST_SET, b"out4_1\0")
    return body + attr(nlnft.LIST_ELEMENTS | NESTED, b"".join(elements))


def decode(body: bytes, key_len: int = 4) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    nlnft._elements(out, "out4_1", key_len, [0], body, 0, len(body))
    return out


FOUR = [element(f"192.0.2.{i}", i, 100 * i) for i in range(1, 60)]
SIX = [element("2001:db8::b", 5, 440), element("::ffff:192.0.2.1", 1, 60), element("2001:db8::c", 0, 0)]


def test_elements_as_the_kernel_writes_them_one_layout_or_several() -> None:
    four = decode(message(FOUR))
    assert len(four) == 59 and four["192.0.2.7"] == (7, 700)
    assert decode(message(SIX), 16) == {
        "2001:db8::b": (5, 440),
        "::ffff:c000:201": (1, 60),  # as ipaddress (and so the nft -j parse) writes it
        "2001:db8::c": (0, 0),
    }
    mixed = [FOUR[0], element("192.0.2.99", 3, 300, listed=True), FOUR[1]]
    assert decode(message(mixed)) == {"192.0.2.1": (1, 100), "192.0.2.99": (3, 300), "192.0.2.2": (2, 200)}


@pytest.mark.parametrize(
    ("elements", "key_len", "why"),
    [
        (FOUR[:3] * 2, 4, "appears twice"),
        (FOUR[:2], 16, "a key of 4 bytes"),
        ([attr(nlnft.LIST_ELEM | NESTED, attr(40, b"\0" * 4))], 4, "element attribute 40"),
        ([attr(nlnft.LIST_ELEM | NESTED, attr(nlnft.ELEM_EXPR | NESTED, counter(1, 1)))], 4, "without a key"),
    ],
)
def test_what_it_does_not_know_is_unknown(elements: list[bytes], key_len: int, why: str) -> None:
    with pytest.raises(Unknown, match=why):
        decode(message(elements), key_len)


def test_hostile_elements_are_unknown_or_read_never_another_error() -> None:
    outcomes = hostile_outcomes(3000, 20261130, [message(FOUR)], decode, Unknown)
    outcomes6 = hostile_outcomes(1000, 20261201, [message(SIX)], lambda body: decode(body, 16), Unknown)
    assert outcomes["unknown"] > 1000 and outcomes["read"] > 100, outcomes
    assert outcomes6["unknown"] > 300 and outcomes6["read"] > 30, outcomes6
