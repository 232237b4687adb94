"""Which iptables a host uses, and the command names for each family.

``iptables --version`` ends in ``(nf_tables)`` or ``(legacy)``; iptables
older than 1.8 prints neither and is legacy.  We use the commands the host's
``iptables`` belongs to, found on PATH as the host has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..runner import Runner

LEGACY = "legacy"
NFT = "nf_tables"

FAMILIES = ("ipv4", "ipv6")


@dataclass(frozen=True)
class Xtables:
    variant: str  # LEGACY or NFT
    version: str

    @staticmethod
    def program(family: str, tool: str = "") -> str:
        """``iptables``/``ip6tables`` with an optional ``-save``/``-restore`` suffix."""
        base = "iptables" if family == "ipv4" else "ip6tables"
        return f"{base}-{tool}" if tool else base

    def sets_counters(self, family: str) -> bool:
        """Whether restoring a rule with ``[packets:bytes]`` keeps those counters.

        ip6tables-nft 1.8.9 (Debian 12) silently drops them; iptables-nft and
        both legacy tools keep them.
        """
        return not (self.variant == NFT and family == "ipv6")


def parse_version(text: str) -> Xtables:
    m = re.search(r"iptables v(\S+)(?:\s+\(([^)]+)\))?", text)
    if not m:
        raise ValueError(f"unrecognised `iptables --version` output: {text.strip()!r}")
    variant = NFT if m.group(2) == "nf_tables" else LEGACY
    return Xtables(variant, m.group(1))


def detect(runner: Runner) -> Xtables:
    """Ask the host's iptables which variant it is (raises CommandError)."""
    return parse_version(runner.run(["iptables", "--version"]))
