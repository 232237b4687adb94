"""report in providers' calendars against Debian's Prometheus: local days of a clock change, a billing month
from its cycle day, and the 95th percentile of 5-minute rates, each against a truth made with the history.

The history runs from 2026-10-20 to 2026-11-04 UTC, one sample a minute (7 s past it), and holds both
autumn clock changes: Europe/Berlin's on 25 October, America/New_York's on 1 November.  Each series'
traffic is made per 5-minute interval, and spread over that interval's samples, so the traffic of any
period is known from the samples, and the percentile of container 402 is known by construction.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Optional
from zoneinfo import ZoneInfo

import pytest

from tests.tsdb import BLOCK, STORES, store
from vz_traffic_exporter import cli

pytestmark = pytest.mark.slow

UTC = timezone.utc
START = int(datetime(2026, 10, 20, tzinfo=UTC).timestamp())
END = int(datetime(2026, 11, 4, tzinfo=UTC).timestamp())
STEP, OFFSET, INTERVAL = 60, 7, 300
LABELS = 'instance="n1",job="calendars"'
BASE, BURST, QUIET = 37_500, 3_750_000, 7_500  # bytes in 5 minutes: 1,000, 100,000 and 200 bit/s
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Series:
    veid: str
    direction: str
    samples: list[tuple[int, int]] = field(default_factory=list)  # (time, value)
    times: Optional[list[int]] = None  # the samples' times, once asked

    @property
    def selector(self) -> str:
        labels = f'veid="{self.veid}",ip="192.0.2.{self.veid[-1]}",class="1",direction="{self.direction}"'
        return f"vz_traffic_ip_bytes_total{{{LABELS},{labels}}}"


def local_day(t: int) -> tuple[int, int, int]:
    day = datetime.fromtimestamp(t, BERLIN)
    return day.year, day.month, day.day


def bursts_on(day: tuple[int, int, int]) -> int:
    """402's bursts of a Berlin day: 14 on the 21st (under 5 % of its 288 intervals), 15 on the 22nd (over),
    15 on the 25th (300 intervals: its 5 % is 15, all free)."""
    return {(2026, 10, 21): 14, (2026, 10, 22): 15, (2026, 10, 25): 15}.get(day, 0)


def per_interval(veid: str, direction: str, k: int, t: int) -> int:
    """Bytes of a series in the k-th 5-minute interval of the history, starting at t."""
    if veid == "402":
        if direction == "in":
            return QUIET
        # The first bursts_on(day) intervals from 12:00 Berlin time of each day burst.
        local = datetime.fromtimestamp(t, BERLIN)
        nth = (local.hour - 12) * 12 + local.minute // 5
        return BURST if 0 <= nth < bursts_on(local_day(t)) else BASE
    # 401 and 403: an amount that changes from interval to interval, a prime apart.
    return 1000 + (k * (7919 if direction == "out" else 104729) + int(veid)) % 50_000


def history() -> list[Series]:
    made = []
    for veid in ("401", "402", "403"):
        for direction in ("in", "out"):
            s = Series(veid, direction)
            value = 0
            for k, t in enumerate(range(START, END, INTERVAL)):
                times = [u for u in range(t + OFFSET, t + INTERVAL, STEP)]
                share, rest = divmod(per_interval(veid, direction, k, t), len(times))
                for i, u in enumerate(times):
                    value += share + (rest if i == 0 else 0)
                    if veid == "403" and direction == "out" and u == START + 4 * 86400 + 3600 + OFFSET:
                        value = 123  # a restart: the counter begins again
                    gap = START + 3 * 86400 + 10 * 3600  # 403 is not scraped for 20 minutes
                    if veid == "403" and gap <= u < gap + 1200:
                        continue
                    s.samples.append((u, value))
            made.append(s)
    return made


def traffic(s: Series, t0: float, t1: float) -> int:
    """The report's rule, written out: the sum of the increases from the last sample at or before t0 to the
    last at or before t1; a drop counts the value after it."""
    times = [t for t, _ in s.samples] if s.times is None else s.times
    s.times = times
    first, end = bisect.bisect_right(times, t0), bisect.bisect_right(times, t1)
    last = s.samples[first - 1][1] if first else 0
    total = 0
    for _, v in s.samples[first:end]:
        total += v - last if v >= last else v
        last = v
    return total


def percentile(series: list[Series], t0: float, t1: float, p: int) -> int:
    """The nearest-rank percentile, in bit/s, of the summed series' rates over 5-minute intervals from t0."""
    cuts = [*range(int(t0), int(t1), INTERVAL), int(t1)]
    rates = sorted(Fraction(8 * sum(traffic(s, a, b) for s in series), b - a) for a, b in zip(cuts, cuts[1:]))
    return round(rates[math.ceil(p / 100 * len(rates)) - 1])


def blocks(made: list[Series]) -> Iterator[str]:
    for start in range(START // BLOCK * BLOCK, END, BLOCK):
        lines = ["# TYPE vz_traffic_ip_bytes counter\n"]
        for s in made:
            lines += [f"{s.selector} {v} {t}\n" for t, v in s.samples if start <= t < start + BLOCK]
        yield "".join(lines) + "# EOF\n"


@pytest.fixture(scope="module", params=STORES)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, list[Series]]]:
    made = history()
    with store(request.param, tmp_path_factory.mktemp("calendars") / "data", blocks(made)) as url:
        yield url, made


def report(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> list[dict[str, str]]:
    code = cli.main(["report", f"--prometheus.url={url}", "--format=csv", "--classes=1", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return list(csv.DictReader(io.StringIO(captured.out)))


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def billed(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], int]:
    """The bytes of each row's period, container and direction."""
    return {(r["start"], r["veid"], r["direction"]): int(r["bytes"]) for r in rows}


def expected_rows(made: list[Series], rows: list[dict[str, str]]) -> dict[tuple[str, str, str], int]:
    """The truth of each row's period, container and direction."""
    truth = {}
    for row in rows:
        t0, t1 = at(row["start"]), at(row["end"])
        mine = [s for s in made if s.veid == row["veid"]]
        chosen = mine if row["direction"] == "total" else [s for s in mine if s.direction == row["direction"]]
        truth[(row["start"], row["veid"], row["direction"])] = sum(traffic(s, t0, t1) for s in chosen)
    return truth


@pytest.mark.parametrize(
    ("zone", "start", "end", "long_day"),
    [
        (
            "Europe/Berlin",
            "2026-10-23T00:00:00+02:00",
            "2026-10-28T00:00:00+01:00",
            "2026-10-25T00:00:00+02:00",
        ),
        (
            "America/New_York",
            "2026-10-30T00:00:00-04:00",
            "2026-11-03T00:00:00-05:00",
            "2026-11-01T00:00:00-04:00",
        ),
    ],
)
def test_local_days_of_a_clock_change_bill_their_real_length(
    server: tuple[str, list[Series]],
    capsys: pytest.CaptureFixture[str],
    zone: str,
    start: str,
    end: str,
    long_day: str,
) -> None:
    url, made = server
    rows = report(capsys, url, f"--timezone={zone}", "--step=day", f"--from={start}", f"--to={end}")
    got = billed(rows)
    assert got == expected_rows(made, rows)
    lengths = {r["start"]: at(r["end"]) - at(r["start"]) for r in rows}
    assert lengths.pop(long_day) == 25 * 3600 and set(lengths.values()) == {24 * 3600}
    assert {r["start"] for r in rows} >= {start} and {r["end"] for r in rows} >= {end}
    print(f"{zone}: {len(rows)} rows, the {long_day[:10]} day of 25 hours, all equal to the truth")


def test_the_hours_of_a_clock_change_are_each_their_own_row(
    server: tuple[str, list[Series]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = server
    rows = report(
        capsys,
        url,
        "--timezone=Europe/Berlin",
        "--step=hour",
        "--from=2026-10-25T00:00:00+02:00",
        "--to=2026-10-26T00:00:00+01:00",
        "--veid=401",
    )
    starts = sorted({r["start"] for r in rows}, key=at)
    assert len(starts) == 25
    assert starts[2:4] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]  # 02:00 twice
    assert billed(rows) == expected_rows(made, rows)


def test_a_billing_month_from_its_cycle_day_in_a_zone(
    server: tuple[str, list[Series]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = server
    rows = report(capsys, url, "--month=2026-10", "--cycle-day=25", "--timezone=Europe/Berlin")
    assert {(r["start"], r["end"]) for r in rows} == {
        ("2026-10-25T00:00:00+02:00", "2026-11-25T00:00:00+01:00")
    }
    assert billed(rows) == expected_rows(made, rows)
    # What came before the local midnight of the 25th is not the month's: 22:00 UTC on the 24th.
    before = report(capsys, url, "--from=2026-10-20T00:00:00Z", "--to=2026-10-24T22:00:00Z")
    whole = report(capsys, url, "--from=2026-10-20T00:00:00Z", "--to=2026-11-25T00:00:00+01:00")
    bytes_of = {r["veid"] + r["direction"]: int(r["bytes"]) for r in rows}
    for b, w in zip(before, whole):
        assert int(b["bytes"]) + bytes_of[b["veid"] + b["direction"]] == int(w["bytes"])


def test_the_95th_percentile_is_known_by_construction(
    server: tuple[str, list[Series]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = server
    rows = report(
        capsys,
        url,
        "--timezone=Europe/Berlin",
        "--step=day",
        "--from=2026-10-21T00:00:00+02:00",
        "--to=2026-10-27T00:00:00+01:00",
        "--percentile=95",
    )
    p95 = {(r["start"][:10], r["veid"], r["direction"]): int(r["p95_bps"]) for r in rows}
    # 402: 14 bursts of 288 intervals are free, 15 are not; on the day of 300 intervals 15 are free again.
    assert p95[("2026-10-21", "402", "out")] == 1_000 and p95[("2026-10-21", "402", "in")] == 200
    assert p95[("2026-10-22", "402", "out")] == 100_000
    assert p95[("2026-10-25", "402", "out")] == 1_000
    assert p95[("2026-10-22", "402", "total")] == 100_000  # the larger of in and out
    # Every row, 403's restart and scrape gap included, against the rule written out.
    for r in rows:
        mine = [s for s in made if s.veid == r["veid"]]
        if r["direction"] == "total":
            want = max(
                percentile([s for s in mine if s.direction == d], at(r["start"]), at(r["end"]), 95)
                for d in ("in", "out")
            )
        else:
            want = percentile(
                [s for s in mine if s.direction == r["direction"]], at(r["start"]), at(r["end"]), 95
            )
        assert int(r["p95_bps"]) == want, r
    assert billed(rows) == expected_rows(made, rows)
