"""Containers from ``vzlist -a -j -o ctid,name,ip`` (legacy OpenVZ and OpenVZ 7).

Compare by hand with ``vzlist -a -o ctid,name,ip``.  Legacy vzlist prints the
CTID as a JSON number, OpenVZ 7 as a string (numeric or UUID).  ``ip`` holds
the runtime addresses of running containers (OpenVZ 7: venet and veth) and
the configured ones of stopped containers.  Needs root.
"""

from __future__ import annotations

from ..model import Container
from .parsing import CommandDiscovery, canonical_addresses, json_list, name_of, text_of

ARGV = ("vzlist", "-a", "-j", "-o", "ctid,name,ip")


def parse_vzlist_json(text: str, where: str = "vzlist") -> list[Container]:
    containers = []
    for i, item in enumerate(json_list(text, where)):
        ctid = item.get("ctid", item.get("veid")) if isinstance(item, dict) else None
        if isinstance(ctid, bool) or not isinstance(ctid, (int, str)) or str(ctid) in ("", "0"):
            raise ValueError(f"{where}: entry {i} has no ctid")
        ips = item.get("ip") or []
        if not isinstance(ips, list):
            raise ValueError(f"{where}: entry {i}: ip is not a list")
        ips = canonical_addresses(ips, f"{where}: entry {i}")
        containers.append(Container(text_of(ctid), name_of(item.get("name")), ips))
    return containers


class VzlistDiscovery(CommandDiscovery):
    name = "vzlist"
    argv = ARGV
    parse = staticmethod(parse_vzlist_json)
