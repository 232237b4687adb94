"""What the tests must leave as they found it: the host's firewall, packages, users and units.

:func:`host_state` reads the root network namespace and the host's system
state without changing either (legacy tables are saved only where the kernel
lists them: reading an absent legacy table would make it).  :func:`tables`
lists the netfilter tables of one network namespace, the way an operator
compares them: ``/proc/net/ip{,6}_tables_names`` for legacy iptables and
``nft list tables`` for nf_tables.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")


def _out(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"<{argv[0]} not installed>"
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return f"{proc.stdout}{proc.stderr}<exit {proc.returncode}>"


def _ruleset(text: str) -> str:
    """A ruleset without the lines that change by themselves: comments with times, counters."""
    return "\n".join(_COUNTERS.sub("", line) for line in text.splitlines() if not line.startswith("#"))


def _in(ns: Optional[str], *argv: str) -> str:
    return _out(*(("ip", "netns", "exec", ns) if ns else ()), *argv)


def tables(ns: Optional[str] = None) -> dict[str, list[str]]:
    """The netfilter tables of a network namespace (None: the root one)."""
    found = {}
    for family in ("ip", "ip6"):
        names = _in(ns, "cat", f"/proc/net/{family}_tables_names").rsplit("<exit", 1)[0]
        found[f"legacy {family}"] = sorted(names.split())
    listed = _in(ns, "nft", "list", "tables").rsplit("<exit", 1)[0]
    found["nft"] = sorted(line.strip() for line in listed.splitlines() if line.startswith("table "))
    return found


def host_state() -> dict[str, str]:
    """Everything the integration suite must leave as it was."""
    listed = tables()
    state = {f"tables: {k}": " ".join(v) for k, v in listed.items()}
    for tool in ("iptables-save", "ip6tables-save"):
        state[tool] = _ruleset(_out(tool))
    for family in ("ip", "ip6"):
        tool = "iptables-legacy-save" if family == "ip" else "ip6tables-legacy-save"
        for table in listed[f"legacy {family}"]:
            state[f"{tool} -t {table}"] = _ruleset(_out(tool, "-t", table))
    state["nft list ruleset"] = _ruleset(_out("nft", "list", "ruleset"))
    state["ipset list -n"] = _out("ipset", "list", "-n")
    state["dpkg -l"] = _out("dpkg", "-l")
    state["/etc/passwd"] = Path("/etc/passwd").read_text()
    state["enabled units"] = "\n".join(
        sorted(
            str(link.relative_to("/etc/systemd/system"))
            for link in Path("/etc/systemd/system").glob("*.wants/*")
            if link.is_symlink()
        )
    )
    for path in ("/etc/vz-traffic-exporter", "/var/lib/vz-traffic-exporter"):
        where = Path(path)
        state[path] = "\n".join(sorted(str(p) for p in where.rglob("*"))) if where.exists() else "<absent>"
    return state


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What changed, as unified diffs per item."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if old != new:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "before", "after", lineterm="")
            out.append(f"{key}:\n" + "\n".join(diff))
    return out
