"""report against Debian's Prometheus on histories made for each way a bill can go wrong.

One small history (a minute apart, around 2026-10-10) holds a container per case; the truth of each is
the traffic the generator added sample by sample, summed over the samples in the period, not a rule
applied to the samples.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pytest

from tests.tsdb import BLOCK, STORES, store
from vz_traffic_exporter import cli

T0 = int(datetime(2026, 10, 10, tzinfo=timezone.utc).timestamp())
T1 = T0 + 86400
FROM, TO = "2026-10-10T00:00:00Z", "2026-10-11T00:00:00Z"
MINUTE, HOUR = 60, 3600
LABELS = 'instance="n1",job="cases"'


@dataclass
class Series:
    """A counter's samples: (time, value, bytes added since the sample before)."""

    metric: str
    labels: str
    samples: list[tuple[int, int, int]] = field(default_factory=list)

    def grow(
        self, start: int, end: int, added: int, first: Optional[int] = None, reset: bool = False
    ) -> None:
        """A sample every minute in [start, end), each adding ``added`` bytes (the first ``first``); a reset
        before the first of them (the counter starts again from zero)."""
        value = 0 if reset or not self.samples else self.samples[-1][1]
        for t in range(start, end, MINUTE):
            step = first if first is not None and t == start else added
            value += step
            self.samples.append((t, value, step))

    def truth(self) -> int:
        return sum(added for t, _, added in self.samples if T0 < t <= T1)


@dataclass
class Case:
    veid: str
    series: list[Series]
    first_seen: Optional[int] = None  # when its exporter says it made the container
    complete: bool = True

    def truth(self, kernel: bool = False) -> int:
        return sum(s.truth() for s in self.series if ("container" in s.metric) == kernel)


def ip_series(veid: str, ip: str) -> Series:
    return Series("vz_traffic_ip_bytes_total", f'{LABELS},veid="{veid}",ip="{ip}",class="1",direction="out"')


def cases() -> dict[str, Case]:
    made: dict[str, Case] = {}
    # Made by its exporter three hours into the period, with 5,000 bytes already: all of it is the period's.
    s = ip_series("301", "192.0.2.31")
    s.grow(T0 + 3 * HOUR, T1 + HOUR, 100, first=5000)
    made["made after the start"] = Case("301", [s], first_seen=T0 + 3 * HOUR - 30)
    # First scraped three hours in (relabelled, a new server), made long before: not known where it
    # started, so only what it grew in the period counts, and the row says so.
    s = ip_series("302", "192.0.2.32")
    s.grow(T0 + 3 * HOUR, T1 + HOUR, 100, first=9_000_000)
    case = Case("302", [s], first_seen=T0 - 30 * 86400, complete=False)
    s.samples[0] = (s.samples[0][0], s.samples[0][1], 0)  # its first sample's value is not this period's
    made["no known start"] = case
    # A new address of a container whose other address was scraped all along: new since, from 0.
    a, b = ip_series("303", "192.0.2.33"), ip_series("303", "2001:db8::33")
    a.grow(T0 - 2 * HOUR, T1 + HOUR, 50)
    b.grow(T0 + 5 * HOUR, T1 + HOUR, 10, first=7000)
    made["a new address"] = Case("303", [a, b], first_seen=T0 - 30 * 86400)
    # Not scraped for an hour around the start, and reset later in the period.
    s = ip_series("304", "192.0.2.34")
    s.grow(T0 - 2 * HOUR, T0 - 30 * MINUTE, 100)
    s.grow(T0 + 30 * MINUTE, T0 + 10 * HOUR, 100, first=3000)
    s.grow(T0 + 10 * HOUR, T1 + HOUR, 100, reset=True)
    made["a gap at the start and a drop"] = Case("304", [s])
    # Reset inside the gap, ending below where it started (today a negative row) ...
    s = ip_series("305", "192.0.2.35")
    s.grow(T0 - 2 * HOUR, T0 - 30 * MINUTE, 10_000)
    s.grow(T0 + 30 * MINUTE, T1 + HOUR, 50, first=2000, reset=True)
    made["a reset in the gap, below"] = Case("305", [s])
    # ... and ending above it.
    s = ip_series("306", "192.0.2.36")
    s.grow(T0 - 2 * HOUR, T0 - 30 * MINUTE, 100)
    s.grow(T0 + 30 * MINUTE, T1 + HOUR, 1000, first=2000, reset=True)
    made["a reset in the gap, above"] = Case("306", [s])
    # A per-address series kept flat (its rules gone) beside the container's live kernel series.
    flat = ip_series("307", "192.0.2.37")
    flat.grow(T0 - 2 * HOUR, T1 + HOUR, 0, first=5000)
    kernel = Series(
        "vz_traffic_container_bytes_total", f'{LABELS},veid="307",class="1",direction="out",family="ipv4"'
    )
    kernel.grow(T0 - 2 * HOUR, T1 + HOUR, 100)
    made["a flat address beside a live kernel series"] = Case("307", [flat, kernel])
    return made


def blocks(made: dict[str, Case]) -> Iterator[str]:
    """The history as OpenMetrics texts, one per two-hour block."""
    counters = [s for case in made.values() for s in case.series]
    gauges = [
        (case.veid, case.first_seen, case.series[0].samples[0][0])
        for case in made.values()
        if case.first_seen is not None
    ]
    last = max(t for s in counters for t, _, _ in s.samples)
    for start in range(min(s.samples[0][0] for s in counters) // BLOCK * BLOCK, last + 1, BLOCK):
        lines = []
        for metric in ("vz_traffic_ip_bytes", "vz_traffic_container_bytes"):
            lines.append(f"# TYPE {metric} counter\n")
            for s in counters:
                if s.metric == f"{metric}_total":
                    lines += [
                        f"{s.metric}{{{s.labels}}} {v} {t}\n"
                        for t, v, _ in s.samples
                        if start <= t < start + BLOCK
                    ]
        lines.append("# TYPE vz_traffic_container_first_seen_timestamp_seconds gauge\n")
        for veid, at, since in gauges:
            lines += [
                f'vz_traffic_container_first_seen_timestamp_seconds{{{LABELS},veid="{veid}"}} {at} {t}\n'
                for t in range(max(start, since), min(start + BLOCK, last + 1), MINUTE)
            ]
        yield "".join(lines) + "# EOF\n"


@pytest.fixture(scope="module", params=STORES)
def history(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, dict[str, Case]]]:
    made = cases()
    with store(request.param, tmp_path_factory.mktemp("cases") / "data", blocks(made)) as url:
        yield url, made


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, list[dict[str, str]], str]:
    code = cli.main(
        ["report", f"--prometheus.url={url}", f"--from={FROM}", f"--to={TO}", "--format=csv", *args]
    )
    captured = capsys.readouterr()
    return code, list(csv.DictReader(io.StringIO(captured.out))), captured.err


@pytest.mark.parametrize("name", list(cases()))
def test_each_case_bills_its_truth(
    history: tuple[str, dict[str, Case]], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    url, made = history
    case = made[name]
    code, rows, err = run(capsys, url, f"--veid={case.veid}", '--selector={job="cases"}')
    assert code == 0, err
    out = {r["direction"]: r for r in rows}
    truth = case.truth(kernel=name.startswith("a flat address"))
    assert int(out["out"]["bytes"]) == truth, (name, err)
    assert int(out["total"]["bytes"]) == truth and int(out["in"]["bytes"]) == 0
    assert all(int(r["bytes"]) >= 0 for r in rows)
    assert {r["complete"] for r in (out["out"], out["total"])} == {"true" if case.complete else "false"}
    assert out["in"]["complete"] == "true"
    if not case.complete:
        assert "no sample at or before the start" in err and f"veid={case.veid}" in err
        assert run(capsys, url, f"--veid={case.veid}", "--strict")[0] == 1
    else:
        assert "no sample at or before" not in err


def test_a_strict_report_of_complete_rows_succeeds(
    history: tuple[str, dict[str, Case]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = history
    complete = [f"--veid={case.veid}" for case in made.values() if case.complete]
    code, rows, _ = run(capsys, url, *complete, "--strict", "--step=hour")
    assert code == 0 and {r["complete"] for r in rows} == {"true"}
    by_case = {case.veid: case for case in made.values()}
    for veid in {r["veid"] for r in rows}:  # the hours add up to the day
        out = sum(int(r["bytes"]) for r in rows if r["veid"] == veid and r["direction"] == "out")
        assert out == by_case[veid].truth(kernel=veid == "307"), veid


def test_the_history_is_what_the_cases_say(tmp_path: Path) -> None:
    """The generator itself: a reset restarts the value, a gap leaves no samples, the truth sums what was
    added in (T0, T1]."""
    s = ip_series("1", "192.0.2.1")
    s.grow(T0 - 2 * MINUTE, T0 + 2 * MINUTE, 10)
    s.grow(T0 + 5 * MINUTE, T0 + 7 * MINUTE, 10, first=3, reset=True)
    assert [(t - T0, v) for t, v, _ in s.samples] == [
        (-120, 10),
        (-60, 20),
        (0, 30),
        (60, 40),
        (300, 3),
        (360, 13),
    ]
    assert s.truth() == 10 + 3 + 10
