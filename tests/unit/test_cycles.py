"""Billing calendars against a truth found by brute force: every UTC quarter hour, read on the zone's clock
(every offset in use, and so every change of one, falls on a quarter hour of UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from vz_traffic_exporter import cycles

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "UTC",
)


QUARTER = timedelta(minutes=15)


def quarters(start: datetime, end: datetime) -> list[datetime]:
    t, found = start, []
    while t < end:
        found.append(t)
        t += QUARTER
    return found


def truth(where: str, start: datetime, end: datetime, what: str, cycle_day: int = 1) -> list[datetime]:
    """The instants in [start, end) where a new local hour, day or billing month begins: the first minute
    whose local clock reading is in another hour, date or cycle than the quarter hour before it (an hour
    read twice, as Berlin's 02:00 in October, is two hours: told apart by their offsets)."""
    zone = cycles.zone(where)

    def period(t: datetime) -> tuple[int, ...]:
        local = t.astimezone(zone)
        if what == "hour":
            return (local.year, local.month, local.day, local.hour, local.utcoffset())
        if what == "day":
            return (local.year, local.month, local.day)
        month = local.year * 12 + local.month - (local.day < cycle_day)
        return (month,)

    found = []
    previous = period(start - QUARTER)
    for t in quarters(start, end):
        now = period(t)
        if now != previous:
            found.append(t)
        previous = now
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("where", ZONES)
def test_days_and_hours_of_a_month_with_a_clock_change_are_the_zones_own(where: str) -> None:
    zone = cycles.zone(where)
    # October 2026 holds Europe's change back (25 Oct), and Lord Howe's and Santiago's forward ones (4 Oct,
    # 6 Sep); March 2026 the New York one forward (8 Mar).
    for start, end in ((utc(2026, 9, 1), utc(2026, 11, 5)), (utc(2026, 3, 1), utc(2026, 3, 20))):
        days = [start]
        while days[-1] < end:
            days.append(cycles.next_day(days[-1], zone))
        assert days[1:-1] == truth(where, start + QUARTER, end, "day")
        hours = [start]
        while hours[-1] < end:
            hours.append(cycles.next_hour(hours[-1], zone))
        assert hours[1:-1] == truth(where, start + QUARTER, end, "hour")


def test_a_day_of_a_clock_change_is_23_or_25_hours_long() -> None:
    berlin, new_york = cycles.zone("Europe/Berlin"), cycles.zone("America/New_York")
    autumn = cycles.local_midnight(berlin, 2026, 10, 25)
    assert (cycles.next_day(autumn, berlin) - autumn) == timedelta(hours=25)
    spring = cycles.local_midnight(new_york, 2026, 3, 8)
    assert (cycles.next_day(spring, new_york) - spring) == timedelta(hours=23)
    assert cycles.stamp(autumn, berlin) == "2026-10-25T00:00:00+02:00"
    assert cycles.stamp(cycles.next_day(autumn, berlin), berlin) == "2026-10-26T00:00:00+01:00"


def test_a_zone_that_skips_midnight_starts_its_day_at_the_first_instant_it_has() -> None:
    santiago = ZoneInfo("America/Santiago")
    start = cycles.local_midnight(santiago, 2026, 9, 6)  # the clock goes from 23:59:59 to 01:00
    assert cycles.stamp(start, santiago) == "2026-09-06T01:00:00-03:00"
    assert start == truth("America/Santiago", utc(2026, 9, 5, 12), utc(2026, 9, 6, 12), "day")[0]


@pytest.mark.parametrize("where", ["Europe/Berlin", "America/New_York", "UTC"])
@pytest.mark.parametrize("day", [1, 15, 28])
def test_billing_months_start_on_the_cycle_day_at_local_midnight(where: str, day: int) -> None:
    cycle = cycles.Cycle(cycles.zone(where), day)
    start, end = utc(2026, 1, 20), utc(2026, 12, 31)
    expected = truth(where, start, end, "month", day)
    months = [cycle.around(start)[1]]
    while months[-1] < end:
        months.append(cycle.after(months[-1]))
    assert months[:-1] == expected
    for first, following in zip(expected, expected[1:]):
        assert cycle.around(first) == (first, following)
        assert cycle.around(following - timedelta(seconds=1)) == (first, following)
        named = first.astimezone(cycle.where)
        assert cycle.month(named.year, named.month) == (first, following)


def test_a_month_of_a_clock_change_is_an_hour_shorter_or_longer() -> None:
    berlin = cycles.Cycle(cycles.zone("Europe/Berlin"))
    start, end = berlin.month(2026, 10)
    assert end - start == timedelta(days=31, hours=1)
    assert (cycles.stamp(start, berlin.where), cycles.stamp(end, berlin.where)) == (
        "2026-10-01T00:00:00+02:00",
        "2026-11-01T00:00:00+01:00",
    )
    start, end = cycles.Cycle(cycles.zone("America/New_York"), 10).month(2026, 2)
    assert end - start == timedelta(days=28, hours=-1)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "Europe/Berlin\0"]
)
def test_what_is_not_a_zone_is_said(name: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        cycles.zone(name)


@pytest.mark.parametrize("day", [0, 29, 31, -1])
def test_a_cycle_day_that_not_every_month_has_is_refused(day: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.28"):
        cycles.Cycle(timezone.utc, day)
