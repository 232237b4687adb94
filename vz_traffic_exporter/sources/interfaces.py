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

import os
import re
from collections.abc import Mapping

from . import InterfaceReading, counter_value

_LEGACY_VETH = re.compile(r"^veth(\d+)\.\d+$")
STATS = (("rx", "out"), ("tx", "in"))


def owner_by_name(name: str) -> str | None:
    m = _LEGACY_VETH.match(name)
    return m.group(1) if m else None


def read_interface(sysfs: str, name: str) -> list[InterfaceReading]:
    base = os.path.join(sysfs, "class", "net", name)
    with open(os.path.join(base, "ifindex"), encoding="ascii") as handle:
        ifindex = int(handle.read().strip())
    readings = []
    for prefix, direction in STATS:
        values = []
        for unit in ("packets", "bytes"):
            path = os.path.join(base, "statistics", f"{prefix}_{unit}")
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
            values.append(counter_value(text, path))
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
            except FileNotFoundError:
                continue  # the device went away while we read it
            out += [(veid, r) for r in readings]
        return out
