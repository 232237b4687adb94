"""Host-side interface counters of containers and VMs (veth, vme).

Compare by hand with ``ip -s link show veth101.0``, or
``cat /sys/class/net/veth101.0/statistics/rx_bytes``.  The host side's
receive is what the container sent (``out``), its transmit what the container
received (``in``).  An interface belongs to a container when discovery or the
configuration names it, or by the legacy OpenVZ name ``veth<CTID>.<N>``.  A
device re-created with a container restart has a new ifindex and counts as a
new counter.  Needs no privilege.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping

from ..files import read_text
from ..model import InterfaceReading, counter_value

_LEGACY_VETH = re.compile(r"^veth(\d+)\.\d+$")
STATS = (("rx", "out"), ("tx", "in"))
SYSFS_SIZE = 4096  # a sysfs attribute is one page at most, and says so as its size


def owner_by_name(name: str) -> str | None:
    m = _LEGACY_VETH.match(name)
    return m.group(1) if m else None


def read_interface(sysfs: str, name: str) -> list[InterfaceReading]:
    base = os.path.join(sysfs, "class", "net", name)
    ifindex = counter_value(
        read_text(os.path.join(base, "ifindex"), SYSFS_SIZE, encoding="ascii").strip(), base
    )
    readings = []
    for prefix, direction in STATS:
        values = []
        for unit in ("packets", "bytes"):
            path = os.path.join(base, "statistics", f"{prefix}_{unit}")
            values.append(counter_value(read_text(path, SYSFS_SIZE, encoding="ascii").strip(), path))
        counter = ("interfaces", name, ifindex, direction)
        readings.append(InterfaceReading(counter, name, direction, values[0], values[1]))
    return readings


class InterfacesSource:
    name = "interfaces"

    def __init__(self, sysfs: str) -> None:
        self.root = os.path.join(sysfs, "class", "net")
        self.sysfs = sysfs

    def available(self) -> bool:
        return os.path.isdir(self.root)

    def read(self, known: Mapping[str, str]) -> list[tuple[str, InterfaceReading]]:
        """(veid, reading) for each container interface present; known maps name -> veid."""
        out = []
        for name in sorted(os.listdir(self.root)):
            veid = known.get(name) or owner_by_name(name)
            if veid is None:
                continue
            try:
                readings = read_interface(self.sysfs, name)
            except OSError as err:
                if err.errno == errno.ENOENT:
                    continue  # the device went away while we read it
                raise
            out += [(veid, r) for r in readings]
        return out
