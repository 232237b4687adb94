"""The periods of a report: a UTC calendar month or an RFC 3339 range, cut by month, day or hour."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Optional

STEPS = ("month", "day", "hour")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class UsageError(ValueError):
    """Bad usage: exit 2."""


def month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=timezone.utc)


def next_month(t: datetime) -> datetime:
    return month_start(t.year + (t.month == 12), t.month % 12 + 1)


def parse_month(text: str) -> tuple[datetime, datetime]:
    m = _MONTH.match(text)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise UsageError(f"--month: {text!r} is not a month (YYYY-MM, like 2026-11)")
    start = month_start(int(m.group(1)), int(m.group(2)))
    return start, next_month(start)


def parse_time(text: str, flag: str) -> datetime:
    """An RFC 3339 time (2026-11-01T00:00:00Z, or with an offset)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not an RFC 3339 time (like 2026-11-01T00:00:00Z)") from None
    if t.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} has no time zone (add Z for UTC)")
    return t.astimezone(timezone.utc)


def last_complete_month(now: datetime) -> tuple[datetime, datetime]:
    end = month_start(now.year, now.month)
    start = month_start(end.year - (end.month == 1), (end.month - 2) % 12 + 1)
    return start, end


def period(
    month: Optional[str], start: Optional[str], end: Optional[str], now: datetime
) -> tuple[datetime, datetime]:
    """The report's whole period [start, end), in UTC."""
    if month and (start or end):
        raise UsageError("--month and --from/--to exclude each other")
    if month:
        begin, finish = parse_month(month)
    elif start or end:
        if not (start and end):
            raise UsageError("--from and --to go together")
        begin, finish = parse_time(start, "--from"), parse_time(end, "--to")
    else:
        begin, finish = last_complete_month(now)
    if finish <= begin:
        raise UsageError("the period is empty: --to must be after --from")
    if finish > now:
        raise UsageError(f"the period ends in the future ({stamp(finish)}): its traffic is not known yet")
    return begin, finish


def boundaries(begin: datetime, finish: datetime, step: Optional[str]) -> list[datetime]:
    """The period's boundaries: the whole period as one row without a step, else cut at each step."""
    if step is None:
        return [begin, finish]
    if step not in STEPS:
        raise UsageError(f"--step: {step!r} is not one of: {', '.join(STEPS)}")
    cuts = [begin]
    t = begin
    while True:
        if step == "month":
            t = next_month(month_start(t.year, t.month))
        elif step == "day":
            t = datetime(t.year, t.month, t.day, tzinfo=timezone.utc) + timedelta(days=1)
        else:
            t = t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        if t >= finish:
            break
        cuts.append(t)
    return [*cuts, finish]


def stamp(t: datetime) -> str:
    """RFC 3339 with Z, as the report's start and end columns have it."""
    text = t.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")
