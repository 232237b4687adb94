"""Address lists as the OpenVZ and Virtuozzo tools print them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def canonical_addresses(words: Iterable[str], where: str) -> tuple[str, ...]:
    """Canonical addresses from tool output: masks stripped, ``-`` and link-local skipped.

    Raises ValueError naming ``where`` for anything that is not an address.
    """
    out: list[str] = []
    for word in words:
        word = word.strip()
        if not word or word == "-":
            continue
        text = word.split("/", 1)[0]
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{where}: {word!r} is not an IP address") from None
        if addr.is_link_local or addr.is_loopback:
            continue
        if str(addr) not in out:
            out.append(str(addr))
    return tuple(out)
