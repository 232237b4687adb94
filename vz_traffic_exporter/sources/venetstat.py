"""Per-class byte counters of the OpenVZ 7 / Virtuozzo 7 kernel.

Compare by hand with ``cat /proc/vz/venetstat /proc/vz/venetstat_v6`` (root
only).  Each line: the kernel VEID, then 16 ``in/out`` byte pairs for classes
0..15, each number right-aligned in 20 columns (so a split on single spaces
breaks them apart).  No packets; counters survive container restarts.
"""

from __future__ import annotations

import os
import re

from ..files import read_text
from ..model import ContainerReading, Unique, counter_value

FILES = {"ipv4": "venetstat", "ipv6": "venetstat_v6"}
MAX_SIZE = 64 << 20  # bytes: about 700 a container
_LINE = re.compile(r"^(\d+)((?:\s+\d+/\s*\d+){16})\s*$")
_PAIR = re.compile(r"(\d+)/\s*(\d+)")


def parse_venetstat(text: str, family: str, where: str = "venetstat") -> list[ContainerReading]:
    readings = []
    veids = Unique("VEID")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{where}:{line_no}: not 16 in/out pairs after a VEID")
        veid = m.group(1)
        veids.add(veid, f"{where}:{line_no}")
        for klass, (incoming, outgoing) in enumerate(_PAIR.findall(m.group(2))):
            for direction, value in (("in", incoming), ("out", outgoing)):
                counter = ("venetstat", family, veid, klass, direction)
                nbytes = counter_value(value, f"{where}:{line_no}: class {klass} {direction}")
                readings.append(ContainerReading(counter, veid, klass, direction, family, nbytes))
    return readings


class VenetstatSource:
    name = "venetstat"

    def __init__(self, procfs: str) -> None:
        self.paths = {family: os.path.join(procfs, "vz", name) for family, name in FILES.items()}

    def available(self) -> bool:
        return os.path.exists(self.paths["ipv4"])

    def read(self) -> list[ContainerReading]:
        readings = []
        for family, path in self.paths.items():
            if family == "ipv6" and not os.path.exists(path):
                continue  # kernels without IPv6 accounting
            readings += parse_venetstat(read_text(path, MAX_SIZE, encoding="ascii"), family, path)
        return readings
