"""Containers from ``vzlist -a -j -o ctid,name,ip`` (legacy OpenVZ and OpenVZ 7).

Compare by hand with ``vzlist -a -o ctid,name,ip``.  Legacy vzlist prints the
CTID as a JSON number, OpenVZ 7 as a string (numeric or UUID).  ``ip`` holds
the runtime addresses of running containers (OpenVZ 7: venet and veth) and
the configured ones of stopped containers.  Needs root.
"""

from __future__ import annotations

import json

from ..runner import Runner
from . import Container
from .addresses import canonical_addresses

ARGV = ("vzlist", "-a", "-j", "-o", "ctid,name,ip")


def parse_vzlist_json(text: str, where: str = "vzlist") -> list[Container]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where}: not JSON: {err}") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of containers")
    containers = []
    for i, item in enumerate(data):
        ctid = item.get("ctid", item.get("veid")) if isinstance(item, dict) else None
        if isinstance(ctid, bool) or not isinstance(ctid, (int, str)) or str(ctid) in ("", "0"):
            raise ValueError(f"{where}: entry {i} has no ctid")
        ips = item.get("ip") or []
        if not isinstance(ips, list):
            raise ValueError(f"{where}: entry {i}: ip is not a list")
        name = item.get("name") or ""
        containers.append(Container(str(ctid), str(name), canonical_addresses(ips, f"{where}: entry {i}")))
    return containers


class VzlistDiscovery:
    name = "vzlist"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def discover(self) -> list[Container]:
        return parse_vzlist_json(self.runner.run(ARGV), " ".join(ARGV))
