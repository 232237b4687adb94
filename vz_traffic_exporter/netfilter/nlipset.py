"""Our ipset sets, their elements and counters, read over netlink: what ``ipset save`` prints, without it.

One dump request to the kernel's ipset subsystem (NETLINK_NETFILTER,
``IPSET_CMD_SAVE``), decoded strictly: only the attributes our sets carry
are understood (an address, a prefix, byte and packet counters, a comment,
padding).  Any other layout in one of our sets, a truncated or malformed
message, or a dump larger than the bounds raises :class:`Unknown`, and the
caller reads ``ipset save`` instead: nothing is guessed.  Other sets on the
node are passed over without being decoded.

The attribute numbers are those of the kernel's ``uapi/linux/netfilter/ipset/ip_set.h``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from typing import Callable, Optional

from .netlink import (
    MAX_ELEMENTS,
    NLA,
    NLA_TYPE_MASK,
    U64,
    Session,
    Unknown,
    address,
    attr,
    attrs,
    records,
    string,
)

NFNL_SUBSYS_IPSET = 6
IPSET_CMD_LIST, IPSET_CMD_SAVE = 7, 8
IPSET_PROTOCOL = 7  # the kernel answers protocols 6 and 7 alike for a dump

# Command level
ATTR_PROTOCOL, ATTR_SETNAME, ATTR_TYPENAME, ATTR_REVISION, ATTR_FAMILY = 1, 2, 3, 4, 5
ATTR_DATA, ATTR_ADT, ATTR_INDEX = 7, 8, 11
# An element
ATTR_IP, ATTR_CIDR, ATTR_BYTES, ATTR_PACKETS, ATTR_COMMENT, ATTR_PAD = 1, 3, 24, 25, 26, 30
IPADDR_IPV4, IPADDR_IPV6 = 1, 2

_ANSWERS = {
    (NFNL_SUBSYS_IPSET << 8) | cmd for cmd in (IPSET_CMD_LIST, IPSET_CMD_SAVE)
}  # a save is answered as a list

Elements = dict[str, tuple[int, int, Optional[str]]]  # element -> (packets, bytes, comment)


def _elements(data: bytes, at: int, end: int, set_type: str, elements: Elements, what: str) -> int:
    """Decode the element attributes (IPSET_ATTR_DATA) in data[at:end] into elements; returns how many."""
    if set_type == "hash:ip" and end - at >= 4:
        fast = _uniform(data, at, end, elements, what)
        if fast is not None:
            return fast
    return _each(data, at, end, set_type, elements, what)


def _uniform(data: bytes, at: int, end: int, elements: Elements, what: str) -> Optional[int]:
    """Elements that all have the layout and attribute headers of the first one, decoded as fixed-size
    records; None when they do not (the caller then decodes them attribute by attribute)."""
    length = NLA.unpack_from(data, at)[0]
    if length < 4 or length > end - at:
        return None
    first: Elements = {}
    _each(data, at, at + length, "hash:ip", first, what)  # the first one, attribute by attribute
    heads, where = [0], {}  # the first one's attribute headers, and where its values are
    for kind, a, b in attrs(data, at + 4, at + length, what):
        heads.append(a - 4 - at)
        if kind == ATTR_IP:
            for _, c, d in attrs(data, a, b, what):
                heads.append(c - 4 - at)
                where["ip"] = (c - at, f"{d - c}s")
        elif kind in (ATTR_BYTES, ATTR_PACKETS):
            where["bytes" if kind == ATTR_BYTES else "packets"] = (a - at, "Q")
        elif kind == ATTR_COMMENT:
            where["comment"] = (a - at, f"{b - a}s")
        else:
            return None  # a prefix, padding: attribute by attribute
    if not {"ip", "bytes", "packets"} <= where.keys():
        return None
    names = sorted(where, key=lambda name: where[name][0])
    rows = records(data, at, end, (length + 3) & ~3, heads, [where[name] for name in names])
    if rows is None:
        return None
    ip, b, p = names.index("ip"), names.index("bytes"), names.index("packets")
    found: Elements
    if "comment" in where:
        c = names.index("comment")
        comments = {raw: string(raw, what) for raw in {row[c] for row in rows}}
        found = {address(row[ip]): (row[p], row[b], comments[row[c]]) for row in rows}
    else:
        found = {address(row[ip]): (row[p], row[b], None) for row in rows}
    if any(found.get(key) != value for key, value in first.items()):  # not where the first one has them
        return None
    before = len(elements)
    elements.update(found)
    if len(found) != len(rows) or len(elements) != before + len(rows):
        raise Unknown(f"{what}: an element appears twice")
    return len(rows)


def _each(data: bytes, at: int, end: int, set_type: str, elements: Elements, what: str) -> int:
    """Decode elements attribute by attribute (any layout this reader knows)."""
    unpack, u64 = NLA.unpack_from, U64.unpack_from
    comments: dict[bytes, str] = {}
    count = 0
    while at < end:
        if end - at < 4:
            raise Unknown(f"{what}: {end - at} bytes after the last element")
        length, kind = unpack(data, at)
        if kind & NLA_TYPE_MASK != ATTR_DATA or length < 4 or at + length > end:
            raise Unknown(f"{what}: attribute {kind & NLA_TYPE_MASK} of {length} bytes among its elements")
        a, stop = at + 4, at + length
        ip = None
        cidr = -1
        packets = nbytes = 0
        comment = None
        while a < stop:
            if stop - a < 4:
                raise Unknown(f"{what}: {stop - a} bytes after an element's last attribute")
            size, part = unpack(data, a)
            part &= NLA_TYPE_MASK
            if size < 4 or a + size > stop:
                raise Unknown(f"{what}: an element attribute of {size} bytes")
            if part == ATTR_IP and size >= 8:
                inner, family = unpack(data, a + 4)
                family &= NLA_TYPE_MASK
                if (family, inner, size) in ((IPADDR_IPV4, 8, 12), (IPADDR_IPV6, 20, 24)):
                    ip = address(data[a + 8 : a + size])
                else:
                    raise Unknown(f"{what}: address attribute {family} of {inner} bytes")
            elif part == ATTR_BYTES and size == 12:
                nbytes = u64(data, a + 4)[0]
            elif part == ATTR_PACKETS and size == 12:
                packets = u64(data, a + 4)[0]
            elif part == ATTR_COMMENT:
                raw = data[a + 4 : a + size]
                comment = comments.get(raw)
                if comment is None:
                    try:
                        comment = comments[raw] = raw.split(b"\0", 1)[0].decode()
                    except UnicodeDecodeError:
                        raise Unknown(f"{what}: a comment that is not UTF-8") from None
            elif part == ATTR_CIDR and size == 5:
                cidr = data[a + 4]
            elif part != ATTR_PAD:
                raise Unknown(f"{what}: element attribute {part} of {size} bytes")
            a += (size + 3) & ~3
        if ip is None:
            raise Unknown(f"{what}: an element without an address")
        if set_type == "hash:net" and cidr >= 0:
            try:
                ip = ipaddress.ip_network(f"{ip}/{cidr}").with_prefixlen
            except ValueError as err:
                raise Unknown(f"{what}: {err}") from None
        elif set_type != "hash:ip" or cidr >= 0:
            raise Unknown(f"{what}: a {set_type} element{' with a prefix' if cidr >= 0 else ''}")
        if ip in elements:
            raise Unknown(f"{what}: {ip} appears twice")
        elements[ip] = (packets, nbytes, comment)
        count += 1
        at += (length + 3) & ~3
    return count


# (set, its type, digest and length of the elements' attributes as one message holds them) -> the elements
Chunks = dict[tuple[str, str, bytes, int], Elements]


class SetDump:
    """The sets whose names start with a prefix, as the kernel holds them: name -> (type, elements).

    known: the chunks of the dump before.  A message whose elements are byte for byte those of a message
    then gives the same elements object, without being decoded again.
    """

    def __init__(self, prefix: str, known: Optional[Chunks] = None) -> None:
        self.prefix = prefix
        self.sets: dict[str, tuple[str, Elements]] = {}
        self.parts: dict[str, list[Elements]] = {}  # set -> its elements message by message, in order
        self.chunks: Chunks = {}
        self._known = known or {}
        self._count = 0

    def message(self, data: bytes, at: int, end: int) -> None:
        """One ipset message: its attributes, data[at:end]."""
        name = set_type = None
        adt = None
        for kind, a, b in attrs(data, at, end, "ipset message"):
            if kind == ATTR_SETNAME:
                name = string(data[a:b], "set name")
                if not name.startswith(self.prefix):
                    return  # not ours: not decoded
            elif kind == ATTR_TYPENAME:
                set_type = string(data[a:b], f"set {name}: type")
            elif kind == ATTR_ADT:
                adt = (a, b)
        if name is None:
            raise Unknown("an ipset message without a set name")
        if set_type is not None:  # the set's header, with its first elements, if any; more may follow
            if name in self.sets:
                raise Unknown(f"set {name}: listed twice")
            self.sets[name] = (set_type, {})
            self.parts[name] = []
        elif name not in self.sets:
            raise Unknown(f"set {name}: elements before its header")
        if adt is None:
            return
        kind_of_set, elements = self.sets[name]
        what = f"set {name}"
        # A 128-bit BLAKE2b digest stands for the bytes, which would take as much memory as the elements.
        view = memoryview(data)[adt[0] : adt[1]]
        key = (name, kind_of_set, hashlib.blake2b(view, digest_size=16).digest(), len(view))
        part = self._known.get(key)
        if part is None:
            part = {}
            _elements(data, *adt, kind_of_set, part, what)
        if key in self.chunks:
            raise Unknown(f"{what}: the same elements twice")
        self.chunks[key] = part
        self.parts[name].append(part)
        before = len(elements)
        elements.update(part)
        if len(elements) != before + len(part):
            raise Unknown(f"{what}: an element appears twice")
        self._count += len(part)
        if self._count > MAX_ELEMENTS:
            raise Unknown(f"more than {MAX_ELEMENTS} elements")


class SetReader:
    """Dumps of our sets one after another: a message that holds what it held in the dump before is not
    decoded again (the element counters of idle containers do not move)."""

    def __init__(self, prefix: str, session: Callable[[], Session]) -> None:
        self.prefix = prefix
        self.session = session
        self._known: Chunks = {}

    def __call__(self) -> SetDump:
        """OSError when netlink answers with an error (no permission, no ip_set module), Unknown for what
        this reader does not decode."""
        self._known, known = {}, self._known  # a read that fails forgets the dump before
        found = SetDump(self.prefix, known)
        with self.session() as session:
            session.ask(
                (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_SAVE,
                socket.AF_INET,
                attr(ATTR_PROTOCOL, bytes([IPSET_PROTOCOL])),
                True,
                _ANSWERS.__contains__,
                found.message,
            )
        self._known = found.chunks
        return found


def dump(prefix: str, session: Callable[[], Session]) -> dict[str, tuple[str, Elements]]:
    """Every set whose name starts with prefix: name -> (type, element -> (packets, bytes, comment))."""
    return SetReader(prefix, session)().sets
