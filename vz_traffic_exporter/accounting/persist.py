"""The accumulator as the state file holds it, and back.

Flat rows keep the file small and quick to write at 10,000 containers:

- counters: ``[source, packets, bytes, epoch, *counter key]``
- missing:  ``[source, packets, bytes, epoch, missing since (s), *counter key]``
- series:   ``[packets, bytes, last seen (s), *series key]``
- floors:   ``[packets, bytes, veid, class, direction, family]``

A row that is not understood names itself in the error (or in ``dropped``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ..model import series_key
from .growth import NO_EPOCH, RAW_LIMIT, Counters

if TYPE_CHECKING:
    from . import Accumulator

STATE_VERSION = 2
TOTAL_LIMIT = 1 << 64  # 18 EB: no total gets near this; a value beyond it in a state file is not one of ours
TIME_LIMIT = 1 << 63
FLOOR_PARTS = 4  # veid, class, direction, family


def to_state(acc: Accumulator) -> dict[str, Any]:
    """A JSON-ready, versioned copy of everything the accumulator knows."""
    acc.touch()
    table = acc.series
    return {
        "version": STATE_VERSION,
        "boot_id": acc.boot_id,
        "counters": [
            [source, c.packets[i], c.bytes[i], None if c.epochs[i] == NO_EPOCH else c.epochs[i], *counter]
            for source, c in acc.counters.items()
            for i, counter in enumerate(c.keys)
        ],
        "missing": [
            [source, p, b, None if e == NO_EPOCH else e, since, *counter]
            for source, missing in acc.missing.items()
            for counter, (p, b, e, since) in missing.items()
        ],
        "series": [
            [table.packets[slot], table.bytes[slot], table.seen[slot], *series]
            for slot, series in enumerate(table.keys)
        ],
        "floors": [[p, b, *key] for key, (p, b) in acc.floors.items()],
        "resets": dict(acc.resets),
        "created": dict(table.created),
    }


def from_state(acc: Accumulator, state: Any, dropped: Optional[list[str]] = None) -> None:
    """Fill a new accumulator from what :func:`to_state` made (ValueError if it is not that).

    dropped: where to list the rows that are not understood, which are then
    left out (one bad row loses that row only); without it, a bad row is a
    ValueError.
    """
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ValueError(f"state format version {version!r:.40}, this exporter reads version {STATE_VERSION}")
    boot_id = state.get("boot_id")
    if boot_id is not None and not isinstance(boot_id, str):
        raise ValueError(f"malformed state: boot_id {boot_id!r:.40} is not a string")
    acc.boot_id = boot_id
    counters, series_rows, resets = (state.get(name) for name in ("counters", "series", "resets"))
    if not isinstance(counters, list) or not isinstance(series_rows, list) or not isinstance(resets, dict):
        raise ValueError("malformed state: counters, series or resets missing")

    def bad(what: str) -> None:
        if dropped is None:
            raise ValueError(f"malformed state: {what}")
        dropped.append(what)

    def rows(name: str, what: str, step: Callable[[list[Any]], None]) -> None:
        found = state.get(name, [])
        for row in found if isinstance(found, list) else [found]:
            try:
                if not isinstance(row, list):
                    raise ValueError("not a list")
                step(row)
            except (TypeError, ValueError, IndexError) as err:
                bad(f"{what} row {_shown(row)}: {err}")

    def counter_row(row: list[Any], missing: bool) -> None:
        head = 5 if missing else 4
        counter = tuple(row[head:])
        if len(row) < head or not isinstance(row[0], str) or not counter or not all(map(_is_part, counter)):
            raise ValueError("not a counter")
        p, b = _count(row[1], RAW_LIMIT), _count(row[2], RAW_LIMIT)
        epoch = NO_EPOCH if row[3] is None else _count(row[3], NO_EPOCH)
        if missing:
            acc.missing.setdefault(row[0], {})[counter] = (p, b, epoch, _count(row[4], TIME_LIMIT))
        else:
            acc.counters.setdefault(row[0], Counters()).set(counter, p, b, epoch)

    def series_row(row: list[Any]) -> None:
        parts = row[3:]
        if not all(isinstance(part, str) for part in parts):
            raise ValueError("not a series")
        key = series_key(parts)
        acc.series.restore(key, _count(row[0]), _count(row[1]), _count(row[2], TIME_LIMIT))

    def floor_row(row: list[Any]) -> None:
        key = tuple(row[2:])
        if len(key) != FLOOR_PARTS or not all(isinstance(part, str) for part in key):
            raise ValueError("not a container series")
        acc.floors[key] = (_count(row[0]), _count(row[1]))

    rows("counters", "counter", lambda row: counter_row(row, missing=False))
    rows("missing", "missing counter", lambda row: counter_row(row, missing=True))
    rows("series", "series", series_row)
    rows("floors", "floor", floor_row)
    for source, count in resets.items():
        try:
            acc.resets[str(source)] = _count(count)
        except ValueError as err:
            bad(f"resets of {_shown(source)}: {err}")
    # Made by series rows above at their last-seen times: the creation times are what the file says, and
    # unknown (0) for a container the file has none for (a state file written before it kept them).
    created = state.get("created", {})
    table = acc.series
    table.created = dict.fromkeys(table.created, 0)
    for veid, at in (created if isinstance(created, dict) else {None: created}).items():
        try:
            if not isinstance(veid, str):
                raise ValueError("not a container")
            table.created[veid] = _count(at, TIME_LIMIT)
        except ValueError as err:
            bad(f"created of {_shown(veid)}: {err}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:120] + "..."


def _count(value: Any, limit: int = TOTAL_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{_shown(value)} is not a counter value")
    return value


def _is_part(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
