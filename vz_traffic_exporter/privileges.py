"""What the exporter needs from the system, said at start-up when it lacks it.

As root it has everything.  As another user (the packaged service runs as
``vz-traffic-exporter`` with systemd granting capabilities), netfilter needs
CAP_NET_ADMIN, and python-iptables, which writes legacy tables, also needs
CAP_NET_RAW.  Without them every read and write fails later with the tools'
own words ("Permission denied (you must be root)"); this says up front which
capability or file permission is missing and where to grant it.
"""

from __future__ import annotations

import os
from typing import Optional

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}


def effective_capabilities(status_text: str) -> Optional[int]:
    """The CapEff mask in the text of /proc/self/status (None when it has none)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def own_capabilities() -> Optional[int]:
    """This process's effective capabilities (read from /proc/self, not under --path.procfs)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            return effective_capabilities(handle.read())
    except OSError:
        return None


def may_admin_netfilter() -> bool:
    """Whether this process may read and change netfilter at all (root, or CAP_NET_ADMIN)."""
    if os.geteuid() == 0:
        return True
    capabilities = own_capabilities()
    return capabilities is not None and bool(capabilities >> CAP_NET_ADMIN & 1)


def needed(backend: Optional[str], legacy: bool) -> list[int]:
    """The capabilities a netfilter backend needs (legacy: iptables on legacy tables)."""
    if backend is None:
        return []
    return [CAP_NET_ADMIN, CAP_NET_RAW] if backend == "iptables" and legacy else [CAP_NET_ADMIN]


def problems(
    uid: int, capabilities: Optional[int], backend: Optional[str], legacy: bool, state_file: Optional[str]
) -> list[str]:
    """Every missing capability or permission, as one sentence each ([] when nothing is missing)."""
    if uid == 0:
        return []
    found = []
    missing = [cap for cap in needed(backend, legacy) if capabilities is None or not capabilities >> cap & 1]
    if missing:
        names = " and ".join(NAMES[cap] for cap in missing)
        them = "them" if len(missing) > 1 else "it"
        found.append(
            f"the {backend} backend needs {names}, which this process (uid {uid}) does not have: "
            f"grant {them} (AmbientCapabilities= in the systemd unit) or run as root"
        )
    if state_file is not None:
        directory = os.path.dirname(os.path.abspath(state_file)) or "."
        if not os.access(directory, os.W_OK | os.X_OK):
            found.append(
                f"the state file {state_file} cannot be written: its directory {directory} is not "
                f"writable by uid {uid} (StateDirectory= in the systemd unit makes one); "
                "totals will not survive a restart"
            )
    return found
