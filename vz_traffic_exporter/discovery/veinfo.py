"""Running containers and their venet addresses from ``/proc/vz/veinfo``.

Compare by hand with ``cat /proc/vz/veinfo``.  Formats: legacy OpenVZ
``"%10u %5u %5u"`` (numeric VEID), OpenVZ 7 ``"%10s %5u %5u"`` (the CTID
string, a UUID unpadded), each followed by the venet addresses (IPv6
uncompressed); Virtuozzo 9 prints no addresses.  VE 0 (the host) is skipped.
Needs root on the host (inside a container the file shows only itself).
"""

from __future__ import annotations

import os

from ..files import read_bytes
from ..model import Container
from .parsing import canonical_addresses

MAX_SIZE = 64 << 20  # bytes


def parse_veinfo(text: str, where: str = "veinfo") -> list[Container]:
    containers = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            raise ValueError(f"{where}:{line_no}: not a veinfo line: {line.strip()!r}")
        if fields[0] == "0":
            continue
        ips = canonical_addresses(fields[3:], f"{where}:{line_no}")
        containers.append(Container(fields[0], "", ips))
    return containers


class VeinfoDiscovery:
    name = "veinfo"

    def __init__(self, procfs: str) -> None:
        self.path = os.path.join(procfs, "vz", "veinfo")

    def available(self) -> bool:
        return os.path.exists(self.path)

    def discover(self) -> list[Container]:
        text = read_bytes(self.path, MAX_SIZE).decode("ascii", errors="replace")
        return parse_veinfo(text, self.path)
