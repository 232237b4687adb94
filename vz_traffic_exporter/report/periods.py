"""The periods of a report: a billing month or an RFC 3339 range, cut by month, day or hour, in a zone.

Months start on the cycle day (1 by default) at local midnight of the zone
(UTC by default); days and hours are the zone's own, with their real length
across a clock change (:mod:`..cycles`).  Every time here is in UTC;
:func:`stamp` writes it with the zone's offset.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Optional

from ..cycles import MAX_CYCLE_DAY, UTC_MONTHS, Cycle, next_day, next_hour, stamp, zone
from .rates import Percentile

STEPS = ("month", "day", "hour")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class UsageError(ValueError):
    """Bad usage: exit 2."""


def calendar(timezone_name: Optional[str], cycle_day: Optional[str]) -> Cycle:
    """The billing month of --timezone and --cycle-day (UTC and 1 when not given)."""
    try:
        where = zone(timezone_name) if timezone_name else timezone.utc
    except ValueError as err:
        raise UsageError(f"--timezone: {err}") from None
    day = 1
    if cycle_day is not None:
        if not cycle_day.isdigit() or not 1 <= int(cycle_day) <= MAX_CYCLE_DAY:
            raise UsageError(
                f"--cycle-day: {cycle_day!r} is not a day 1..{MAX_CYCLE_DAY} (every month has it)"
            )
        day = int(cycle_day)
    return Cycle(where, day)


_PERCENT = re.compile(r"^(?:100|[1-9]\d?)(?:\.\d{1,3})?$")
_INTERVAL = re.compile(r"^(\d+)(s|m|h)$")


def percentile_of(text: Optional[str], interval: Optional[str]) -> Optional[Percentile]:
    """--percentile P (1..100) with --percentile-interval (default 5m); None without --percentile."""
    if text is None:
        if interval is not None:
            raise UsageError("--percentile-interval goes with --percentile")
        return None
    if not _PERCENT.match(text) or not 1 <= Fraction(text) <= 100:
        raise UsageError(f"--percentile: {text!r} is not a percentile 1..100 (like 95)")
    m = _INTERVAL.match(interval or "5m")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)] if m else 0
    if not 1 <= seconds <= 86400:
        raise UsageError(f"--percentile-interval: {interval!r} is not a duration 1s..24h (like 5m or 300s)")
    shown = str(Fraction(text)) if Fraction(text).denominator == 1 else text.rstrip("0")
    return Percentile(Fraction(text) / 100, seconds, shown)


def parse_month(text: str, cycle: Cycle) -> tuple[datetime, datetime]:
    """The billing month named YYYY-MM: it starts on the cycle day of that calendar month."""
    m = _MONTH.match(text)
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise UsageError(f"--month: {text!r} is not a month (YYYY-MM, like 2026-11)")
    return cycle.month(int(m.group(1)), int(m.group(2)))


def parse_time(text: str, flag: str) -> datetime:
    """An RFC 3339 time (2026-11-01T00:00:00Z, or with an offset)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not an RFC 3339 time (like 2026-11-01T00:00:00Z)") from None
    if t.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} has no time zone (add Z for UTC)")
    return t.astimezone(timezone.utc)


def last_complete_month(now: datetime, cycle: Cycle) -> tuple[datetime, datetime]:
    end = cycle.around(now)[0]
    return cycle.around(end - timedelta(seconds=1))[0], end


def period(
    month: Optional[str], start: Optional[str], end: Optional[str], now: datetime, cycle: Cycle = UTC_MONTHS
) -> tuple[datetime, datetime]:
    """The report's whole period [start, end), in UTC."""
    if month and (start or end):
        raise UsageError("--month and --from/--to exclude each other")
    if month:
        begin, finish = parse_month(month, cycle)
    elif start or end:
        if not (start and end):
            raise UsageError("--from and --to go together")
        begin, finish = parse_time(start, "--from"), parse_time(end, "--to")
    else:
        begin, finish = last_complete_month(now, cycle)
    if finish <= begin:
        raise UsageError("the period is empty: --to must be after --from")
    if finish > now:
        raise UsageError(
            f"the period ends in the future ({stamp(finish, cycle.where)}): its traffic is not known yet"
        )
    return begin, finish


def boundaries(
    begin: datetime, finish: datetime, step: Optional[str], cycle: Cycle = UTC_MONTHS
) -> list[datetime]:
    """The period's boundaries: the whole period as one row without a step, else cut at each start of a
    billing month, local day or local hour."""
    if step is None:
        return [begin, finish]
    if step not in STEPS:
        raise UsageError(f"--step: {step!r} is not one of: {', '.join(STEPS)}")
    cuts = [begin]
    t = begin
    while True:
        if step == "month":
            t = cycle.after(t)
        elif step == "day":
            t = next_day(t, cycle.where)
        else:
            t = next_hour(t, cycle.where)
        if t >= finish:
            break
        cuts.append(t)
    return [*cuts, finish]


__all__ = ["STEPS", "UsageError", "boundaries", "calendar", "percentile_of", "period", "stamp"]
