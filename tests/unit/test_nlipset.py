"""The netlink ipset reader: messages built as the kernel writes them, and hostile ones."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from tests.conftest import ReplayRunner, fixture_text, hostile_outcomes
from vz_traffic_exporter.netfilter import nlipset
from vz_traffic_exporter.netfilter.netlink import Unknown
from vz_traffic_exporter.rules.ipset import IpsetRules


def no_socket() -> Any:
    """The netlink door of a test whose reads are scripted above it: no socket is opened."""
    raise AssertionError("this test opens no netlink socket")


class Unused:
    """A netlink socket that nothing speaks over (the reads above it are scripted): it can only be closed."""

    def close(self) -> None:
        pass


NESTED, NET_ORDER = 0x8000, 0x4000


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def element(ip: str, packets: int, nbytes: int, comment: str | None = None, cidr: int | None = None) -> bytes:
    family, kind = (
        (socket.AF_INET6, nlipset.IPADDR_IPV6) if ":" in ip else (socket.AF_INET, nlipset.IPADDR_IPV4)
    )
    parts = attr(nlipset.ATTR_IP | NESTED, attr(kind | NET_ORDER, socket.inet_pton(family, ip)))
    if cidr is not None:
        parts += attr(nlipset.ATTR_CIDR, bytes([cidr]))
    parts += attr(nlipset.ATTR_BYTES | NET_ORDER, struct.pack(">Q", nbytes))
    parts += attr(nlipset.ATTR_PACKETS | NET_ORDER, struct.pack(">Q", packets))
    if comment is not None:
        parts += attr(nlipset.ATTR_COMMENT, comment.encode() + b"\0")
    return attr(nlipset.ATTR_DATA | NESTED, parts)


def message(name: str, set_type: str | None, elements: list[bytes]) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + attr(nlipset.ATTR_PROTOCOL, b"\x07")
    body += attr(nlipset.ATTR_SETNAME, name.encode() + b"\0")
    if set_type is not None:
        body += attr(nlipset.ATTR_TYPENAME, set_type.encode() + b"\0")
    if elements:
        body += attr(nlipset.ATTR_ADT | NESTED, b"".join(elements))
    return body


def decode(*messages: bytes) -> dict[str, tuple[str, nlipset.Elements]]:
    found = nlipset.SetDump("vztraffic")
    for body in messages:
        found.message(body, 4, len(body))  # after the nfgenmsg header
    return found.sets


STAMP = "1795321295632573124"
COUNTING = [element(f"192.0.2.{i}", i, 100 * i, STAMP) for i in range(1, 40)]
SIX = [element("2001:db8::b", 5, 440), element("2001:db8::c", 0, 0), element("::ffff:192.0.2.1", 1, 60)]
NETS = [element("198.51.100.0", 0, 0, cidr=25), element("203.0.113.7", 0, 0, cidr=32)]


def test_messages_as_the_kernel_writes_them() -> None:
    sets = decode(
        message("vztraffic4-out-1", "hash:ip", COUNTING[:10]),
        message("vztraffic4-out-1", None, COUNTING[10:]),  # more elements of the same set
        message("operators-own", "hash:ip", [element("192.0.2.200", 1, 1, "x")]),  # not ours: passed over
        message("vztraffic6-in-0", "hash:ip", SIX),
        message("vztraffic4-net-1", "hash:net", NETS),
    )
    assert set(sets) == {"vztraffic4-out-1", "vztraffic6-in-0", "vztraffic4-net-1"}
    kind, counting = sets["vztraffic4-out-1"]
    assert kind == "hash:ip" and len(counting) == 39 and counting["192.0.2.7"] == (7, 700, STAMP)
    assert sets["vztraffic6-in-0"][1] == {
        "2001:db8::b": (5, 440, None),
        "2001:db8::c": (0, 0, None),
        "::ffff:c000:201": (1, 60, None),  # written as the ipset save parse writes it
    }
    assert sets["vztraffic4-net-1"][1] == {"198.51.100.0/25": (0, 0, None), "203.0.113.7/32": (0, 0, None)}


def test_mixed_layouts_in_one_message_are_read_attribute_by_attribute() -> None:
    mixed = [COUNTING[0], element("192.0.2.99", 3, 300), COUNTING[1]]  # one without a comment
    assert decode(message("vztraffic4-in-1", "hash:ip", mixed))["vztraffic4-in-1"][1] == {
        "192.0.2.1": (1, 100, STAMP),
        "192.0.2.99": (3, 300, None),
        "192.0.2.2": (2, 200, STAMP),
    }


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([message("vztraffic4-in-1", None, COUNTING)], "before its header"),
        ([message("vztraffic4-in-1", "hash:ip", COUNTING[:2] * 2)], "appears twice"),
        ([message("vztraffic4-in-1", "hash:ip", [element("192.0.2.1", 1, 1, cidr=24)])], "with a prefix"),
        ([message("vztraffic4-in-1", "hash:ip,port", [element("192.0.2.1", 1, 1)])], "hash:ip,port"),
        (
            [message("vztraffic4-in-1", "hash:ip", [attr(nlipset.ATTR_DATA, attr(40, b"\0" * 4))])],
            "attribute 40",
        ),
        ([message("vztraffic4-in-1", "hash:ip", []), message("vztraffic4-in-1", "hash:ip", [])], "twice"),
    ],
)
def test_what_it_does_not_know_is_unknown(messages: list[bytes], why: str) -> None:
    with pytest.raises(Unknown, match=why):
        decode(*messages)


def test_a_message_that_holds_what_it_held_before_is_not_decoded_again() -> None:
    def dump(known: nlipset.Chunks, *messages: bytes) -> nlipset.SetDump:
        found = nlipset.SetDump("vztraffic", known)
        for body in messages:
            found.message(body, 4, len(body))
        return found

    same = [element(f"192.0.2.{i}", 0, 0, STAMP) for i in range(1, 5)]
    messages = [
        message("vztraffic4-out-1", "hash:ip", COUNTING[:10]),
        message("vztraffic4-out-1", None, COUNTING[10:]),
        message("vztraffic4-in-1", "hash:ip", same),
        message("vztraffic4-out-0", "hash:ip", same),  # the same bytes in another set
    ]
    first = dump({}, *messages)
    again = dump(first.chunks, *messages)
    assert again.sets == first.sets == decode(*messages)
    assert all(a is b for name in first.parts for a, b in zip(first.parts[name], again.parts[name]))
    assert first.parts["vztraffic4-in-1"][0] is not first.parts["vztraffic4-out-0"][0]
    grown = [COUNTING[0], element("192.0.2.2", 3, 300, STAMP), *COUNTING[2:10]]
    third = dump(again.chunks, message("vztraffic4-out-1", "hash:ip", grown), *messages[1:])
    assert third.sets == decode(message("vztraffic4-out-1", "hash:ip", grown), *messages[1:])
    assert third.sets["vztraffic4-out-1"][1]["192.0.2.2"] == (3, 300, STAMP)
    parts = third.parts["vztraffic4-out-1"]
    assert (
        parts[0] is not again.parts["vztraffic4-out-1"][0] and parts[1] is again.parts["vztraffic4-out-1"][1]
    )
    # A set made again with another type is decoded as that type.
    net = message("vztraffic4-out-1", "hash:net", COUNTING[:10])
    with pytest.raises(Unknown, match="hash:net element"):
        dump(first.chunks, net)
    twice = [messages[0], message("vztraffic4-out-1", None, COUNTING[:10])]
    with pytest.raises(Unknown, match="twice"):
        dump(first.chunks, *twice)


def test_hostile_messages_are_unknown_or_read_never_another_error() -> None:
    good = [message("vztraffic4-out-1", "hash:ip", COUNTING), message("vztraffic6-in-0", "hash:ip", SIX)]
    outcomes = hostile_outcomes(3000, 20261130, good, decode, Unknown)
    assert outcomes["unknown"] > 1000 and outcomes["read"] > 100, outcomes


def test_a_dump_it_cannot_read_falls_back_to_ipset_save_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unknown(reader: nlipset.SetReader) -> None:
        raise Unknown("set vztraffic4-in-1: element attribute 40 of 4 bytes")

    monkeypatch.setattr(nlipset.SetReader, "__call__", unknown)
    save = fixture_text("cmd/ipset-save.txt")
    tables = {(tool, "-t", "filter"): "" for tool in ("iptables-save", "ip6tables-save")}
    runner = ReplayRunner(
        {("ipset", "save"): save, **tables}, installed=("ipset", "iptables", "ip6tables"), netlink=no_socket
    )
    rules = IpsetRules(runner, variant=lambda: "nft")
    first = rules.read()[1]
    again = rules.read()[1]
    assert len(first) == 16 and [(r.ip, r.bytes) for r in first] == [(r.ip, r.bytes) for r in again]
    said = [r.getMessage() for r in caplog.records if "netlink" in r.getMessage()]
    assert said == [
        "ipset over netlink: set vztraffic4-in-1: element attribute 40 of 4 bytes; reading ipset save instead"
    ]


def test_the_filter_tables_are_read_again_only_when_the_ruleset_generation_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vz_traffic_exporter.netfilter import nlnft

    monkeypatch.setattr(nlipset.SetReader, "__call__", lambda reader: nlipset.SetDump(reader.prefix, {}))
    generations = iter([5, 5, 6, 6])
    monkeypatch.setattr(nlnft, "generation", lambda session: next(generations))
    tables = {(tool, "-t", "filter"): "" for tool in ("iptables-save", "ip6tables-save")}
    runner = ReplayRunner(tables, installed=("ipset", "iptables", "ip6tables"), netlink=Unused)
    rules = IpsetRules(runner, variant=lambda: "nf_tables")
    saves = []
    for _ in range(4):
        rules.read()
        saves.append(sum(1 for argv, _ in runner.calls if argv[0].endswith("-save")))
    assert saves == [2, 2, 4, 4]  # both families at the first read and after the generation moved
    legacy = IpsetRules(
        ReplayRunner(tables, installed=("ipset", "iptables", "ip6tables"), netlink=no_socket),
        lambda: "legacy",
    )
    legacy.read()
    legacy.read()
    assert sum(1 for argv, _ in legacy.runner.calls if argv[0].endswith("-save")) == 4  # no generation to ask
