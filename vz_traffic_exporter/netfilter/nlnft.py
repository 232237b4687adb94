"""One nftables table as our backend reads it, over netlink: what ``nft -j list table`` shows, without it.

Requests to the kernel's nf_tables subsystem (NETLINK_NETFILTER): the table
(its handle), its chains' names, its named sets and maps, and the elements of
each set with their counters.  Decoded strictly, as :mod:`.nlipset` is: only
what our table holds is understood; anything else raises
:class:`~.nlipset.Unknown` and the caller reads ``nft -j`` instead.

The attribute numbers are those of the kernel's ``uapi/linux/netfilter/nf_tables.h``.
"""

from __future__ import annotations

import errno as errnos
import functools
import socket
from dataclasses import dataclass, field
from typing import Callable, Optional

from .netlink import (
    MAX_ELEMENTS,
    NLA,
    U32,
    U64,
    Changed,
    Session,
    Unknown,
    address,
    attr,
    attrs,
    records,
    string,
)

NFNL_SUBSYS_NFTABLES = 10
MSG_GETTABLE, MSG_GETCHAIN, MSG_GETSET, MSG_GETSETELEM, MSG_GETGEN = 1, 4, 10, 13, 16
GEN_ID = 1
NFPROTO = {"inet": 1, "ip": 2, "ip6": 10}

TABLE_NAME, TABLE_HANDLE = 1, 4
CHAIN_TABLE, CHAIN_NAME = 1, 3
SET_TABLE, SET_NAME, SET_FLAGS, SET_KEY_LEN = 1, 2, 3, 5
SET_ANONYMOUS, SET_MAP = 0x1, 0x8
LIST_TABLE, LIST_SET, LIST_ELEMENTS, LIST_ELEM = 1, 2, 3, 1
ELEM_KEY, ELEM_FLAGS, ELEM_EXPR, ELEM_PAD, ELEM_EXPRESSIONS = 1, 3, 7, 8, 11
DATA_VALUE = 1
EXPR_NAME, EXPR_DATA = 1, 2
COUNTER_BYTES, COUNTER_PACKETS, COUNTER_PAD = 1, 2, 3


@dataclass
class Table:
    """What the backend needs of its table (exists False: there is none)."""

    exists: bool = False
    handle: int = 0
    chains: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    sets: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # name -> address -> counters


def _string(data: bytes, a: int, b: int, what: str) -> str:
    return string(data[a:b], what)


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _ours(kind: int) -> bool:
    return kind >> 8 == NFNL_SUBSYS_NFTABLES


def generation(session: Session) -> int:
    """The nf_tables ruleset's generation: it changes with every change of any table (iptables-nft's too)."""
    found: list[int] = []

    def gen(data: bytes, at: int, end: int) -> None:
        found.extend(
            U32.unpack_from(data, a)[0]
            for kind, a, b in attrs(data, at, end, "gen")
            if kind == GEN_ID and b - a == 4
        )

    session.ask((NFNL_SUBSYS_NFTABLES << 8) | MSG_GETGEN, socket.AF_UNSPEC, b"", False, _ours, gen)
    if len(found) != 1:
        raise Unknown(f"{len(found)} ruleset generations in the answer")
    return found[0]


def read_table(family: str, name: str, session: Callable[[], Session]) -> Table:
    """The table ``family name``: its handle, chains, maps, and sets with their elements' counters.

    One consistent read: its requests are bracketed by the ruleset's generation, and made again once when
    it moved (or a dump says it was interrupted by a change), since an element deleted between two requests
    would be missing from the read.  OSError when netlink answers with another error than "no such table",
    Unknown for what this reader does not decode, :class:`~.netlink.Changed` when the ruleset changed
    during both reads.
    """
    for _ in range(2):
        with session() as one:
            before = generation(one)
            try:
                table = _read_table(one, family, name)
            except Changed:
                continue
            if generation(one) == before:
                return table
    raise Changed(f"the ruleset changed during both reads of table {family} {name}")


def _read_table(session: Session, family: str, name: str) -> Table:
    table = Table()
    proto = NFPROTO[family]

    def ask(message: int, payload: bytes, dump: bool, each: Callable[[bytes, int, int], None]) -> None:
        session.ask((NFNL_SUBSYS_NFTABLES << 8) | message, proto, payload, dump, _ours, each)

    try:
        ask(MSG_GETTABLE, attr(TABLE_NAME, _name(name)), False, functools.partial(_table, table))
    except OSError as err:
        if err.errno == errnos.ENOENT:
            return Table()
        raise
    if not table.exists:
        raise Unknown(f"no answer for table {family} {name}")
    ask(MSG_GETCHAIN, attr(CHAIN_TABLE, _name(name)), True, functools.partial(_chain, table, name))
    kinds: dict[str, int] = {}
    ask(MSG_GETSET, attr(SET_TABLE, _name(name)), True, functools.partial(_set, kinds, name))
    count = [0]
    for set_name, key_len in kinds.items():  # in the kernel's order, as nft lists them
        if key_len < 0:
            table.maps.append(set_name)
            continue
        elements = table.sets[set_name] = {}
        query = attr(LIST_TABLE, _name(name)) + attr(LIST_SET, _name(set_name))
        ask(MSG_GETSETELEM, query, True, functools.partial(_elements, elements, set_name, key_len, count))
    return table


def _table(table: Table, data: bytes, at: int, end: int) -> None:
    for kind, a, b in attrs(data, at, end, "table"):
        if kind == TABLE_HANDLE and b - a == 8:
            table.handle = U64.unpack_from(data, a)[0]
            table.exists = True


def _chain(table: Table, name: str, data: bytes, at: int, end: int) -> None:
    owner = chain = None
    for kind, a, b in attrs(data, at, end, "chain"):
        if kind == CHAIN_TABLE:
            owner = _string(data, a, b, "chain table")
        elif kind == CHAIN_NAME:
            chain = _string(data, a, b, "chain name")
    if chain is None:
        raise Unknown("a chain without a name")
    if owner == name:
        table.chains.append(chain)


def _set(kinds: dict[str, int], table: str, data: bytes, at: int, end: int) -> None:
    """kinds: set name -> its key length (a map: -1)."""
    owner = name = None
    flags = 0
    key_len = 0
    for kind, a, b in attrs(data, at, end, "set"):
        if kind == SET_TABLE:
            owner = _string(data, a, b, "set table")
        elif kind == SET_NAME:
            name = _string(data, a, b, "set name")
        elif kind == SET_FLAGS and b - a == 4:
            flags = U32.unpack_from(data, a)[0]
        elif kind == SET_KEY_LEN and b - a == 4:
            key_len = U32.unpack_from(data, a)[0]
    if name is None:
        raise Unknown("a set without a name")
    if owner != table or flags & SET_ANONYMOUS:
        return
    kinds[name] = -1 if flags & SET_MAP else key_len


def _counter(data: bytes, at: int, end: int, what: str) -> tuple[int, int]:
    """(packets, bytes) of one expression, which must be a counter."""
    name = None
    counted: Optional[tuple[int, int]] = None
    for kind, a, b in attrs(data, at, end, what):
        if kind == EXPR_NAME:
            name = _string(data, a, b, what)
        elif kind == EXPR_DATA:
            packets = nbytes = None
            for inner, c, d in attrs(data, a, b, what):
                if inner == COUNTER_BYTES and d - c == 8:
                    nbytes = U64.unpack_from(data, c)[0]
                elif inner == COUNTER_PACKETS and d - c == 8:
                    packets = U64.unpack_from(data, c)[0]
                elif inner != COUNTER_PAD:
                    raise Unknown(f"{what}: counter attribute {inner}")
            if packets is None or nbytes is None:
                raise Unknown(f"{what}: a counter without packets or bytes")
            counted = (packets, nbytes)
    if name != "counter" or counted is None:
        raise Unknown(f"{what}: expression {name!r}, not a counter")
    return counted


def _elements(
    out: dict[str, tuple[int, int]],
    set_name: str,
    key_len: int,
    count: list[int],
    data: bytes,
    at: int,
    end: int,
) -> None:
    what = f"set {set_name}"
    for kind, a, b in attrs(data, at, end, what):
        if kind != LIST_ELEMENTS:
            continue
        found = _uniform(data, a, b, key_len, what)
        if found is None:
            found = _each(data, a, b, key_len, what)
        before = len(out)
        out.update(found)
        if len(out) != before + len(found):
            raise Unknown(f"{what}: an element appears twice")
        count[0] += len(found)
        if count[0] > MAX_ELEMENTS:
            raise Unknown(f"more than {MAX_ELEMENTS} elements")


def _uniform(data: bytes, at: int, end: int, key_len: int, what: str) -> Optional[dict[str, tuple[int, int]]]:
    """Elements that all have the layout and attribute headers of the first one, as fixed-size records;
    None when they do not (the caller then decodes them attribute by attribute)."""
    if end - at < 4:
        return None
    length = NLA.unpack_from(data, at)[0]
    if length < 4 or length > end - at:
        return None
    first = _each(data, at, at + ((length + 3) & ~3), key_len, what)  # the first one, attribute by attribute
    heads = [0]  # offsets of every attribute header in the first element
    where: dict[str, tuple[int, str]] = {}  # offsets of the key, the bytes and the packets

    def walk(a: int, b: int, depth: int) -> None:
        for kind, c, d in attrs(data, a, b, what):
            heads.append(c - 4 - at)
            if (depth == 0 and kind in (ELEM_KEY, ELEM_EXPR)) or (depth == 1 and kind == EXPR_DATA):
                walk(c, d, depth + 1)
            elif depth == 1 and kind == DATA_VALUE and d - c == key_len:
                where["key"] = (c - at, f"{key_len}s")
            elif depth == 2 and kind in (COUNTER_BYTES, COUNTER_PACKETS) and d - c == 8:
                where["bytes" if kind == COUNTER_BYTES else "packets"] = (c - at, "Q")

    walk(at + 4, at + length, 0)
    if set(where) != {"key", "bytes", "packets"}:
        return None
    names = sorted(where, key=lambda name: where[name][0])
    rows = records(data, at, end, (length + 3) & ~3, heads, [where[name] for name in names])
    if rows is None:
        return None
    k, p, b = names.index("key"), names.index("packets"), names.index("bytes")
    found = {address(row[k]): (row[p], row[b]) for row in rows}
    if len(found) != len(rows):
        raise Unknown(f"{what}: an element appears twice")
    if any(found.get(ip) != value for ip, value in first.items()):  # not where the first one has them
        return None
    return found


def _each(data: bytes, at: int, end: int, key_len: int, what: str) -> dict[str, tuple[int, int]]:
    """Elements attribute by attribute."""
    out: dict[str, tuple[int, int]] = {}
    for item, c, d in attrs(data, at, end, what):
        if item != LIST_ELEM:
            raise Unknown(f"{what}: attribute {item} among its elements")
        key = None
        counted = (0, 0)
        for part, e, f in attrs(data, c, d, what):
            if part == ELEM_KEY:
                for inner, g, h in attrs(data, e, f, what):
                    if inner != DATA_VALUE or h - g != key_len or key_len not in (4, 16):
                        raise Unknown(f"{what}: a key of {h - g} bytes")
                    key = data[g:h]
            elif part == ELEM_EXPR:
                counted = _counter(data, e, f, what)
            elif part == ELEM_EXPRESSIONS:
                found = [_counter(data, g, h, what) for _, g, h in attrs(data, e, f, what)]
                if len(found) != 1:
                    raise Unknown(f"{what}: {len(found)} expressions on an element")
                counted = found[0]
            elif part != ELEM_PAD:
                raise Unknown(f"{what}: element attribute {part}")
        if key is None:
            raise Unknown(f"{what}: an element without a key")
        ip = address(key)
        if ip in out:
            raise Unknown(f"{what}: {ip} appears twice")
        out[ip] = counted
    return out
