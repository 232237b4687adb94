"""Names and shapes of the iptables objects we own.

Every chain we create starts with ``VZTRAFFIC-``; nothing else is ours.

    FORWARD -> VZTRAFFIC-FORWARD -> VZTRAFFIC-CLS-OUT, VZTRAFFIC-CLS-IN
    INPUT   -> VZTRAFFIC-INPUT   -> VZTRAFFIC-CLS-OUT        (host_traffic)
    OUTPUT  -> VZTRAFFIC-OUTPUT  -> VZTRAFFIC-CLS-IN         (host_traffic)

``VZTRAFFIC-CLS-OUT`` classifies a packet by its destination (the peer of a
container that sends) and ``-g``oes to ``VZTRAFFIC-OUT-<class>``, where one
rule per container address (``-s <ip> -j RETURN``) counts it.  ``CLS-IN``
does the same by source into ``VZTRAFFIC-IN-<class>`` (``-d <ip>``).  A goto
returns to the entry chain after counting, so each packet is counted in one
class per direction, and nothing here ever accepts or drops.

``VZTRAFFIC-EPOCH`` is never jumped to: it holds one rule per counting chain,
``-m comment --comment <chain>-at-<stamp> -j RETURN``, made when the chain is
made.  A chain re-created by anyone gets a new stamp, so its counting rules
are known to start again from zero even when their new values are above the
old ones.  Where the tools can set rule counters, the epoch rule also holds
a one-byte *marker*; no packet ever reaches it, so a marker at zero means the
table was zeroed (``iptables -Z``), and the marker is then set again.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Optional

PREFIX = "VZTRAFFIC-"
HOOKS = ("FORWARD", "INPUT", "OUTPUT")
DIRECTIONS = ("in", "out")


EPOCH_CHAIN = f"{PREFIX}EPOCH"


def entry_chain(hook: str) -> str:
    return f"{PREFIX}{hook}"


def classify_chain(direction: str) -> str:
    return f"{PREFIX}CLS-{direction.upper()}"


def counting_chain(direction: str, klass: int) -> str:
    return f"{PREFIX}{direction.upper()}-{klass}"


_COUNTING_CHAIN = re.compile(rf"^{PREFIX}(IN|OUT)-(\d+)$")
_COUNTING_SPEC = re.compile(r"^-([sd]) (\S+?)(?:/(\d+))? -j RETURN$")


def parse_counting_chain(name: str) -> Optional[tuple[str, int]]:
    m = _COUNTING_CHAIN.match(name)
    return (m.group(1).lower(), int(m.group(2))) if m else None


def host_prefix(ip: str) -> str:
    """An address as a host network; ip is written as an address (only IPv6 addresses hold a colon)."""
    return f"{ip}/{128 if ':' in ip else 32}"


@functools.lru_cache(maxsize=1 << 18)  # one entry an address: the four rules of one address share it
def _address(text: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def counting_spec(direction: str, ip: str) -> str:
    """The rule that counts one address: the container is source when it sends."""
    flag = "-s" if direction == "out" else "-d"
    return f"{flag} {host_prefix(ip)} -j RETURN"


def parse_counting_spec(direction: str, spec: str) -> Optional[str]:
    """The address a counting rule of ours counts, or None if it is not one."""
    m = _COUNTING_SPEC.match(spec)
    if not m or m.group(1) != ("s" if direction == "out" else "d"):
        return None
    addr = _address(m.group(2))
    if addr is None:
        return None
    if m.group(3) is not None and int(m.group(3)) != addr.max_prefixlen:
        return None
    return str(addr)


STAMP_DIGITS = 19  # our stamps are nanoseconds since the epoch, below 2**63


def stamp_of(text: str) -> Optional[int]:
    """A stamp we wrote (decimal, below 2**63), or None: anything else is not one of ours."""
    if not (text.isdigit() and text.isascii()) or len(text) > STAMP_DIGITS:
        return None
    value = int(text)
    return value if value < 1 << 63 else None


def epoch_spec(chain: str, stamp: int) -> str:
    return f"-m comment --comment {chain}-at-{stamp} -j RETURN"


_EPOCH_SPEC = re.compile(rf'^-m comment --comment "?({PREFIX}(?:IN|OUT)-\d+)-at-(\d+)"? -j RETURN$')


def parse_epoch_spec(spec: str) -> Optional[tuple[str, int]]:
    """(counting chain, stamp) of an epoch rule, or None if it is not one."""
    m = _EPOCH_SPEC.match(spec)
    stamp = stamp_of(m.group(2)) if m else None
    return None if m is None or stamp is None else (m.group(1), stamp)


# Adopted mode's one object: a chain never jumped to, holding one rule whose one-byte marker
# `iptables -Z` of the table clears with the operator's counters, so that zeroing is seen even
# when a rule has grown past its old value by the next read.
ADOPTED_MARK_CHAIN = f"{PREFIX}ADOPTED"


def adopted_mark_spec(stamp: int) -> str:
    return f"-m comment --comment adopted-at-{stamp} -j RETURN"


_ADOPTED_MARK = re.compile(r'^-m comment --comment "?adopted-at-(\d+)"? -j RETURN$')


def parse_adopted_mark(spec: str) -> Optional[int]:
    m = _ADOPTED_MARK.match(spec)
    return stamp_of(m.group(1)) if m else None


def is_ours(chain: str) -> bool:
    return chain.startswith(PREFIX)


def jump_target(spec: str) -> Optional[str]:
    """The chain a rule jumps or goes to, if any."""
    m = re.search(r"(?:^|\s)-[jg]\s+(\S+)", spec)
    return m.group(1) if m else None
