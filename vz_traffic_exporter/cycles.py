"""Billing calendars: months that start on a cycle day, days and hours, in a time zone's local time.

A billing month with cycle day N in zone Z is [N-th 00:00, next month's N-th
00:00) on Z's wall clock: 28 to 31 days, and an hour more or less where it
holds a daylight-saving change.  A day is local midnight to local midnight
(23, 24 or 25 hours); an hour starts where the local clock shows a whole
hour.  Where a zone skips local midnight (the clock jumps from 23:59 to
01:00), the day starts at the first instant it has.  Every function takes
aware datetimes and gives them in UTC: Python subtracts and compares two
datetimes of one zone by their wall clocks, which is wrong across a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = "UTC"
MAX_CYCLE_DAY = 28  # every month has it


def zone(name: str) -> tzinfo:
    """The IANA zone of that name (Europe/Berlin, UTC); ValueError saying why it is not one."""
    if name == UTC:
        return timezone.utc
    if not name or name.startswith("/") or ".." in name or "\0" in name:
        raise ValueError(f"{name!r} is not an IANA time zone name (like Europe/Berlin or UTC)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{name!r} is not a time zone known to this system's tz database (like Europe/Berlin or UTC)"
        ) from None


def local_midnight(where: tzinfo, year: int, month: int, day: int) -> datetime:
    """The first instant of that local date (fold 0 before a gap takes the offset before it, which lands on
    the first wall time that exists)."""
    return datetime(year, month, day, tzinfo=where).astimezone(timezone.utc)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class Cycle:
    """A billing month: from local midnight of day ``day`` in ``where`` to the same day a month later."""

    where: tzinfo = timezone.utc
    day: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.day <= MAX_CYCLE_DAY:
            raise ValueError(f"the cycle day must be 1..{MAX_CYCLE_DAY}, not {self.day}")

    def start(self, year: int, month: int) -> datetime:
        """The start of the billing month named year-month (it starts in that calendar month)."""
        return local_midnight(self.where, year, month, self.day)

    def month(self, year: int, month: int) -> tuple[datetime, datetime]:
        """[start, end) of the billing month named year-month."""
        return self.start(year, month), self.start(*_add_months(year, month, 1))

    def around(self, t: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the billing month that holds the instant t."""
        local = t.astimezone(self.where)
        year, month = local.year, local.month
        if t.astimezone(timezone.utc) < self.start(year, month):
            year, month = _add_months(year, month, -1)
        return self.month(year, month)

    def after(self, start: datetime) -> datetime:
        """The start of the billing month after the one that holds start."""
        return self.around(start)[1]


UTC_MONTHS = Cycle()  # calendar months in UTC: the default


def next_day(t: datetime, where: tzinfo) -> datetime:
    """The local midnight after t."""
    local = t.astimezone(where)
    tomorrow = local.date() + timedelta(days=1)
    return local_midnight(where, tomorrow.year, tomorrow.month, tomorrow.day)


_QUARTER = timedelta(minutes=15)  # every UTC offset in use is a whole number of quarter hours


def next_hour(t: datetime, where: tzinfo) -> datetime:
    """The next start of a local hour after t: where the local clock shows a whole hour, or where its offset
    changes (Berlin's second 02:00 in October is an hour of its own; Lord Howe's half-hour change makes an
    hour of 30 minutes)."""
    utc = t.astimezone(timezone.utc)
    candidate = utc.replace(minute=utc.minute // 15 * 15, second=0, microsecond=0) + _QUARTER
    while True:
        local = candidate.astimezone(where)
        if local.minute == 0 or local.utcoffset() != (candidate - _QUARTER).astimezone(where).utcoffset():
            return candidate
        candidate += _QUARTER


def stamp(t: datetime, where: tzinfo = timezone.utc) -> str:
    """RFC 3339 in the zone: Z for UTC, else the zone's offset at that instant (2026-10-01T00:00:00+02:00)."""
    text = t.astimezone(where).isoformat()
    return text.replace("+00:00", "Z") if where is timezone.utc else text
