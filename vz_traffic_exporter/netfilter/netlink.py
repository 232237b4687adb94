"""What the netlink readers share: a NETLINK_NETFILTER request and its answers, read strictly and bounded.

Used by :mod:`.nlipset` and :mod:`.nlnft`.  Anything a reader does not
decode is :class:`Unknown`; :class:`Fallback` turns that (and a refusal
from the kernel) into one log line and a read of the tool's text instead.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional, TypeVar

from ..runner import Netlink

log = logging.getLogger(__name__)

NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x4, 0x10, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

MAX_ELEMENTS = 4_000_000  # per read
MAX_BYTES = 1 << 30  # of messages per read

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
NLA = struct.Struct("=HH")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")

T = TypeVar("T")


class Unknown(ValueError):
    """The answer holds something the reader does not decode: read the tool's text instead."""


class Changed(Unknown):
    """The objects changed while they were dumped (NLM_F_DUMP_INTR): the answers may miss some."""


class Incomplete(OSError):
    """The kernel ended a dump with an error (in NLMSG_DONE): the answers may miss some."""


def attrs(data: bytes, at: int, end: int, what: str) -> Iterator[tuple[int, int, int]]:
    """(type, start, end) of the payload of each attribute in data[at:end], in order."""
    while at < end:
        if end - at < 4:
            raise Unknown(f"{what}: {end - at} bytes after the last attribute")
        length, kind = NLA.unpack_from(data, at)
        if length < 4 or at + length > end:
            raise Unknown(f"{what}: an attribute of {length} bytes at {at} of {end}")
        yield kind & NLA_TYPE_MASK, at + 4, at + length
        at += (length + 3) & ~3


def string(raw: bytes, what: str) -> str:
    """A NUL-terminated attribute as text."""
    try:
        return raw.split(b"\0", 1)[0].decode()
    except UnicodeDecodeError:
        raise Unknown(f"{what}: not UTF-8") from None


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded."""
    raw = NLA.pack(4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def address(raw: bytes) -> str:
    """A 4- or 16-byte address as the ipaddress module writes it (and so the tools' text after parsing)."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:10] == bytes(10):  # mapped and compatible forms: inet_ntop writes them otherwise
        return str(ipaddress.IPv6Address(raw))
    return socket.inet_ntop(socket.AF_INET6, raw)


def records(
    data: bytes, at: int, end: int, record: int, heads: Sequence[int], fields: Sequence[tuple[int, str]]
) -> Optional[list[tuple[Any, ...]]]:
    """The values of fixed-size records in data[at:end] whose attribute headers (at the offsets heads,
    found in the first record) all equal the first record's; None when they do not.

    fields: (offset in a record, struct code) of each value, in order of offset.  Headers are compared
    byte column by byte column, each column one slice: no Python step per record.
    """
    if record <= 0 or (end - at) % record:
        return None
    count = (end - at) // record
    for head in heads:
        for i in range(at + head, at + head + 4):
            if data[i:end:record] != data[i : i + 1] * count:
                return None
    shape, place = ">", 0
    for offset, code in fields:
        if offset < place:
            return None
        shape += f"{offset - place}x{code}"
        place = offset + struct.calcsize(">" + code)
    if place > record:
        return None
    return list(struct.Struct(shape + f"{record - place}x").iter_unpack(data[at:end]))


class Session:
    """One NETLINK_NETFILTER socket, request after request (a context manager)."""

    def __init__(self, sock: Any) -> None:
        """sock: the socket to speak over (a runner's :meth:`~..runner.Runner.netlink` opens one)."""
        self.sock = sock
        self.sequence = int.from_bytes(os.urandom(4), "little") or 1
        self.buffer = bytearray(1 << 20)
        self.total = 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def ask(
        self,
        kind: int,
        family: int,
        payload: bytes,
        dump: bool,
        answers: Callable[[int], bool],
        each: Callable[[bytes, int, int], None],
    ) -> None:
        """Send one request; each(data, start, end) gets the attributes of every answer whose type answers()
        accepts (after its nfgenmsg header).  OSError for an error the kernel answers, :class:`Incomplete`
        for a dump it ended with an error, :class:`Changed` for one it marked as interrupted by a change:
        a dump is complete or not taken.
        """
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF or 1
        body = struct.pack("=BBH", family, 0, 0) + payload
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, flags, self.sequence, 0) + body)
        while True:
            size, _, received, _ = self.sock.recvmsg_into([self.buffer])
            if received & socket.MSG_TRUNC:
                raise Unknown("a netlink message larger than 1 MiB")
            self.total += size
            if self.total > MAX_BYTES:
                raise Unknown(f"more than {MAX_BYTES} bytes of answers")
            data = bytes(self.buffer[:size])
            at = 0
            while at + HEADER.size <= size:
                length, answer, flags, sequence, _ = HEADER.unpack_from(data, at)
                if length < HEADER.size or at + length > size:
                    raise Unknown(f"a netlink message of {length} bytes at {at} of {size}")
                if sequence != self.sequence:
                    raise Unknown(f"a netlink message of sequence {sequence}, not {self.sequence}")
                if flags & NLM_F_DUMP_INTR:
                    raise Changed("the objects changed during the dump")
                if answer == NLMSG_DONE:
                    # netlink_dump_done: the dump's own error, 0 when it went through to the end
                    code = -struct.unpack_from("=i", data, at + HEADER.size)[0] if length >= 20 else 0
                    if code:
                        raise Incomplete(code, f"the dump ended with: {os.strerror(code)}")
                    return
                if answer == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, at + HEADER.size)[0] if length >= 20 else 0
                    if code:
                        raise OSError(code, os.strerror(code))
                    if not dump:
                        return  # the acknowledgement of a request that is not a dump
                elif answers(answer):
                    each(data, at + HEADER.size + 4, at + length)
                else:
                    raise Unknown(f"a netlink message of type {answer:#x}")
                at += (length + 3) & ~3


class Fallback:
    """A netlink read that gives way to the tool's text when it fails, said once per reason."""

    def __init__(self, what: str, instead: str) -> None:
        self.what, self.instead = what, instead
        self.failed = ""

    def __call__(self, read: Callable[[], T]) -> Optional[T]:
        """read()'s result, or None after a failure (then read the tool's text)."""
        try:
            found = read()
        except (Unknown, OSError) as err:
            if str(err) != self.failed:
                # What the reader does not know is worth a warning; a refusal (no permission, no module) is
                # the tool's to report, if it meets it too.
                level = logging.WARNING if isinstance(err, (Unknown, Incomplete)) else logging.DEBUG
                log.log(level, "%s over netlink: %s; reading %s instead", self.what, err, self.instead)
                self.failed = str(err)
            return None
        if self.failed:
            log.info("%s over netlink works again", self.what)
            self.failed = ""
        return found


def sessions(opener: Netlink) -> Callable[[], Session]:
    """Sessions over the sockets a runner opens (:meth:`~..runner.Runner.netlink`)."""
    return lambda: Session(opener())
