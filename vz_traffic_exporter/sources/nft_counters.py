"""Virtuozzo Hybrid Server 9 accounting: named counters in ``netdev ve_*`` tables.

Compare by hand with ``nft list counters table netdev ve_<ctid>`` (root or
CAP_NET_ADMIN).  Each container has a table ``netdev ve_<CTID without
dashes>`` holding counters ``counter_<i|o><4|6>_<class>``: ``i`` received
by the container, ``o`` sent by it.  The counters are reset and the table
deleted when the container's network goes down.  The table's handle is its
counters' epoch: the kernel numbers tables from one sequence per network
namespace (``nf_tables_newtable``: ``++nft_net->table_handle``), so a
re-created table is a new incarnation even when its counters already hold
more than the old ones did.  The read is ``nft -j list ruleset netdev``,
which shows the tables with their handles and the counters in one
consistent dump (nft reads its cache again when the ruleset changed during
the read).  Left unseen: counters zeroed (``nft reset counters``) and grown
back to exactly their old values before the next read; nothing shows that.
"""

from __future__ import annotations

import json
import re

from ..model import ContainerReading, Unique, counter_value
from ..runner import Runner, output_of

ARGV = ("nft", "-j", "list", "ruleset", "netdev")
_TABLE = re.compile(r"^ve_([0-9A-Za-z_.-]+)$")
_COUNTER = re.compile(r"^counter_([io])([46])_(\d+)$")


def ctid_of_table(table: str) -> str | None:
    """ve_101 -> 101; ve_<32 hex> -> the dashed UUID; anything else None."""
    m = _TABLE.match(table)
    if not m:
        return None
    ident = m.group(1)
    if len(ident) == 32 and all(c in "0123456789abcdefABCDEF" for c in ident):
        return f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:]}".lower()
    return ident


def parse_nft_counters(text: str, where: str = "nft") -> list[ContainerReading]:
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{where}: not nftables JSON: {err}") from None
    if not isinstance(items, list):
        raise ValueError(f"{where}: nftables: not a list")
    readings = []
    names = Unique("counter")
    handles: dict[str, int] = {}  # netdev table -> its handle, where the dump shows its tables
    for item in items:
        table = item.get("table") if isinstance(item, dict) else None
        if isinstance(table, dict) and table.get("family") == "netdev" and "handle" in table:
            handles[str(table.get("name"))] = counter_value(
                table["handle"], f"{where}: table {table.get('name')}"
            )
    for item in items:
        counter = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(counter, dict) or counter.get("family") != "netdev":
            continue
        ctid = ctid_of_table(str(counter.get("table", "")))
        m = _COUNTER.match(str(counter.get("name", "")))
        if ctid is None or m is None:
            continue
        direction = "in" if m.group(1) == "i" else "out"
        family = "ipv4" if m.group(2) == "4" else "ipv6"
        klass = int(m.group(3))
        what = f"{where}: counter {counter.get('name')} of table {counter.get('table')}"
        nbytes = counter_value(counter.get("bytes"), f"{what}: bytes")
        packets = counter_value(counter.get("packets"), f"{what}: packets")
        key = ("nft_counters", counter["table"], counter["name"])
        names.add(key[1:], what)
        epoch = handles.get(str(counter["table"]))
        readings.append(ContainerReading(key, ctid, klass, direction, family, nbytes, packets, epoch=epoch))
    return readings


class NftCountersSource:
    name = "nft_counters"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def available(self) -> bool:
        tables = output_of(self.runner, ("nft", "list", "tables", "netdev"))  # None: not permitted, no netdev
        return tables is not None and any(
            line.split()[-1].startswith("ve_") for line in tables.splitlines() if line.strip()
        )

    def read(self) -> list[ContainerReading]:
        return parse_nft_counters(self.runner.run(ARGV), " ".join(ARGV))
