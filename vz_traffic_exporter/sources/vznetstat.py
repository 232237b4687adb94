"""Per-class bytes and packets from the ``vznetstat`` command (Virtuozzo 7, 9).

Compare by hand with ``vznetstat -4 -a`` and ``vznetstat -6 -a`` (root).
Without ``-4``/``-6`` vznetstat sums both families, so each is asked for
separately; ``-a`` prints all 16 classes.  The id column is a CTID for known
containers, else the kernel VEID (``0`` is the host).  Packet counts are 32
bits wide and wrap (Virtuozzo 7), or stop at 2**31 - 1 (Virtuozzo 9, where
``auto`` reads the nft counters instead).  A packet count that went down is
taken as a wrap only when the bytes grew enough to carry 2**32 packets (80
GiB and more, :data:`~..accounting.MIN_PACKET`); else it was reset (a
Virtuozzo 9 container restart re-creates its counters).  The header is ``UUID ...`` (or ``CTID ...`` on old
versions); ``-r`` style K/M/G values are refused, they are not exact.
"""

from __future__ import annotations

from ..model import ContainerReading, Unique, counter_value
from ..runner import Runner

ARGV = {"ipv4": ("vznetstat", "-4", "-a"), "ipv6": ("vznetstat", "-6", "-a")}
# Virtuozzo 9's vznetstat reads the nft packet counts with json-c's json_object_get_int: they
# stop at 2**31 - 1 instead of wrapping (its byte counts are 64-bit and fine).  A count that
# went down from there was reset, never wrapped (accounting.SATURATED).


def parse_vznetstat(text: str, family: str, where: str = "vznetstat") -> list[ContainerReading]:
    readings = []
    rows = Unique("id and class")
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] in ("UUID", "CTID"):
            continue
        if len(fields) != 6 or not all(f.isdigit() for f in fields[1:]) or len(fields[1]) > 2:
            raise ValueError(f"{where}:{line_no}: expected id, class, bytes, packets, bytes, packets")
        ident, klass = fields[0], int(fields[1])
        rows.add((ident, klass), f"{where}:{line_no}")
        in_bytes, in_pkts, out_bytes, out_pkts = (counter_value(f, f"{where}:{line_no}") for f in fields[2:])
        for direction, nbytes, packets in (("in", in_bytes, in_pkts), ("out", out_bytes, out_pkts)):
            counter = ("vznetstat", family, ident, klass, direction)
            readings.append(
                ContainerReading(counter, ident, klass, direction, family, nbytes, packets, packet_bits=32)
            )
    return readings


class VznetstatSource:
    name = "vznetstat"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def available(self) -> bool:
        return self.runner.which("vznetstat") is not None

    def read(self) -> list[ContainerReading]:
        readings = []
        for family, argv in ARGV.items():
            readings += parse_vznetstat(self.runner.run(argv), family, " ".join(argv))
        return readings
