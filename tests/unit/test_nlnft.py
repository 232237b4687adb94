"""The netlink nftables reader's element decoding: built as the kernel writes them, and hostile ones."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from tests.conftest import hostile_outcomes
from vz_traffic_exporter.netfilter import nlnft
from vz_traffic_exporter.netfilter.netlink import Changed, Incomplete, Session, Unknown

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


class Kernel:
    """A netlink socket that answers as nf_tables does: requests by message type, in a given order.

    answers: per request, the (type, flags, payload) of each answer, NLMSG_DONE and its error included.
    """

    def __init__(self, answers: list[list[tuple[int, int, bytes]]]) -> None:
        self.answers = answers
        self.asked: list[int] = []
        self.pending = b""

    def send(self, data: bytes) -> int:
        _, kind, _, sequence, _ = struct.unpack_from("=IHHII", data)
        self.asked.append(kind & 0xFF)
        self.pending = b""
        for answer, flags, payload in self.answers.pop(0):
            body = struct.pack("=IHHII", 16 + len(payload), answer, flags, sequence, 0) + payload
            self.pending += body + b"\0" * (-len(body) % 4)
        return len(data)

    def recvmsg_into(self, buffers: list[bytearray]) -> tuple[int, list[object], int, object]:
        if not self.pending:
            raise TimeoutError("nothing more to answer")
        size = len(self.pending)
        buffers[0][:size] = self.pending
        self.pending = b""
        return size, [], 0, None

    def close(self) -> None:
        pass


NFT = nlnft.NFNL_SUBSYS_NFTABLES << 8
HEAD = struct.pack("=BBH", 1, 0, 0)  # nfgenmsg


ACK = (2, 0, struct.pack("=i", 0) + bytes(16))  # NLMSG_ERROR 0 and the request's header


def generation(number: int) -> list[tuple[int, int, bytes]]:
    return [(NFT | nlnft.MSG_GETGEN, 0, HEAD + attr(nlnft.GEN_ID, struct.pack(">I", number))), ACK]


def done(error: int = 0) -> tuple[int, int, bytes]:
    return (3, 2, struct.pack("=i", -error))  # NLMSG_DONE, NLM_F_MULTI


def table_read(elements: list[bytes], flags: int = 2, end: tuple[int, int, bytes] = done()) -> list[list]:
    """The answers to the table's four requests, its one set holding elements."""
    table = HEAD + attr(nlnft.TABLE_NAME, b"vz_traffic\0") + attr(nlnft.TABLE_HANDLE, struct.pack(">Q", 7))
    nft_set = HEAD + attr(nlnft.SET_TABLE, b"vz_traffic\0") + attr(nlnft.SET_NAME, b"out4_1\0")
    nft_set += attr(nlnft.SET_KEY_LEN, struct.pack(">I", 4))
    return [
        [(NFT | nlnft.MSG_GETTABLE, 0, table), ACK],
        [done()],  # no chains
        [(NFT | nlnft.MSG_GETSET, 2, nft_set), done()],
        [(NFT | nlnft.MSG_GETSETELEM, flags, HEAD + message(elements)), end],
    ]


def read(answers: list[list]) -> tuple[nlnft.Table, Kernel]:
    kernel = Kernel(answers)
    table = nlnft.read_table("inet", "vz_traffic", lambda: Session(kernel))
    assert kernel.answers == [], "requests left unasked"
    return table, kernel


def test_a_read_is_bracketed_by_the_ruleset_generation_and_made_again_once_when_it_moved() -> None:
    table, kernel = read([generation(5), *table_read(FOUR), generation(5)])
    assert len(table.sets["out4_1"]) == 59 and table.handle == 7
    assert kernel.asked == [16, 1, 4, 10, 13, 16]

    # An element deleted between two requests: the first read is not taken, the second is.
    table, _ = read(
        [
            generation(5),
            *table_read(FOUR[:30]),
            generation(6),
            generation(6),
            *table_read(FOUR[1:]),
            generation(6),
        ]
    )
    assert sorted(table.sets["out4_1"]) == sorted(f"192.0.2.{i}" for i in range(2, 60))

    with pytest.raises(Changed, match="during both reads"):
        read(
            [generation(5), *table_read(FOUR), generation(6), generation(6), *table_read(FOUR), generation(7)]
        )


def test_a_dump_interrupted_or_ended_by_an_error_is_not_taken() -> None:
    interrupted = table_read(FOUR, flags=2 | 0x10)  # NLM_F_DUMP_INTR
    table, _ = read([generation(5), *interrupted, generation(5), *table_read(FOUR), generation(5)])
    assert len(table.sets["out4_1"]) == 59  # the second read

    with pytest.raises(Incomplete, match="No buffer space"):
        read([generation(5), *table_read(FOUR, end=done(errno.ENOBUFS))])
    with pytest.raises(Changed):
        read([generation(5), *interrupted, generation(5), *interrupted])
