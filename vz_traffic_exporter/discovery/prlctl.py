"""Containers and VMs from ``prlctl list -a -j -o uuid,envid,name,type,ip`` (Virtuozzo 7/9).

Compare by hand with ``prlctl list -a -o uuid,envid,name,type,ip``.  Every
JSON value is a string; the UUID comes without braces; ``ip`` is the last
column so that prlctl prints every address (space separated, with trailing
spaces; ``-`` or blank when there is none).  The veid is the ``envid`` (the
CTID of a container, the UUID of a VM).  Needs root.
"""

from __future__ import annotations

from ..model import Container
from .parsing import CommandDiscovery, canonical_addresses, json_list, name_of, text_of

ARGV = ("prlctl", "list", "-a", "-j", "-o", "uuid,envid,name,type,ip")


def parse_prlctl_json(text: str, where: str = "prlctl") -> list[Container]:
    containers = []
    for i, item in enumerate(json_list(text, where)):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: entry {i} is not an object")
        veid = text_of(item.get("envid") or item.get("uuid") or "").strip("{} ")
        if not veid:
            raise ValueError(f"{where}: entry {i} has neither envid nor uuid")
        ips = canonical_addresses(str(item.get("ip") or "").split(), f"{where}: entry {i}")
        containers.append(Container(veid, name_of(item.get("name")), ips))
    return containers


class PrlctlDiscovery(CommandDiscovery):
    name = "prlctl"
    argv = ARGV
    parse = staticmethod(parse_prlctl_json)
