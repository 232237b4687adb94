"""Exposition: metric families built at scrape time, served over HTTP."""

from __future__ import annotations

from typing import NamedTuple, Optional


class Part(NamedTuple):
    """A named piece of the exposition, and its change token: a part whose name and token are the same as
    at the last scrape holds the same bytes (None: not known), and what was made of it (its gzip) is kept."""

    name: str
    token: Optional[int]
    data: bytes
