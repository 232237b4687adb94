"""UDP traffic for the lab: ``sink PORT`` or ``send SRC DST PORT COUNT SIZE``.

The sender paces itself so that no datagram is dropped on the way (the
tests compare counters with what was sent, to the byte); ``loop`` sends a
steady trickle for the demo.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time


def _socket(src: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((src, 0))
    return sock


def send(src: str, dst: str, port: int, count: int, size: int) -> None:
    payload = b"\x00" * size
    with _socket(src) as sock:
        for i in range(count):
            sock.sendto(payload, (dst, port))
            if i % 20 == 19:
                time.sleep(0.002)


def sink(port: int) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("::", port))
    while True:
        sock.recv(65535)


def loop(port: int, interval: float, size: int, pairs: list[str]) -> None:
    """Forever: one datagram from each src to each dst (pairs are "src>dst")."""
    socks = {}
    for pair in pairs:
        src, dst = pair.split(">")
        socks[(src, dst)] = _socket(src)
    payload = b"\x00" * size
    while True:
        for (_, dst), sock in socks.items():
            sock.sendto(payload, (dst, port))
        time.sleep(interval)


def main(argv: list[str]) -> None:
    if argv[0] == "sink":
        sink(int(argv[1]))
    elif argv[0] == "send":
        send(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    elif argv[0] == "loop":
        loop(int(argv[1]), float(argv[2]), int(argv[3]), argv[4:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
