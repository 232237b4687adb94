"""Shared pieces of the discovery parsers: tool JSON, address lists, command sources."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any, Callable, Optional

from ..model import Container
from ..runner import Runner

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_of(value: object) -> str:
    """A tool's string as a label can hold it: a lone surrogate (from a JSON escape) becomes U+FFFD."""
    text = str(value)
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def name_of(value: object) -> str:
    """A container's name as vzlist and prlctl print it: none is null (legacy) or "-" (OpenVZ 7, prlctl)."""
    if value is None or value == "-":
        return ""
    return text_of(value)


def canonical_addresses(words: Iterable[str], where: str) -> tuple[str, ...]:
    """Canonical addresses from tool output: masks stripped, ``-`` and link-local skipped.

    Raises ValueError naming ``where`` for anything that is not an address.
    """
    out: list[str] = []
    for word in words:
        if not isinstance(word, str):
            raise ValueError(f"{where}: {text_of(word)[:60]!r} is not an IP address")
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


def json_list(text: str, where: str) -> list[Any]:
    """The top-level JSON list a listing tool prints, or ValueError naming where."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where}: not JSON: {err}") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list")
    return data


class CommandDiscovery:
    """A discovery source that runs one listing command and parses its output."""

    name = ""
    argv: tuple[str, ...] = ()
    parse: Callable[[str, str], list[Container]]

    def __init__(self, runner: Runner, timeout: Optional[float] = None) -> None:
        """timeout: how long the command may take (prlctl asks every running guest)."""
        self.runner = runner
        self.timeout = timeout

    def discover(self) -> list[Container]:
        return type(self).parse(self.runner.run(self.argv, timeout=self.timeout), " ".join(self.argv))
