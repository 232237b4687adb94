"""report against Debian's Prometheus holding a known history (promtool tsdb create-blocks-from openmetrics).

Every row at every step must equal the truth the generator computed from the traffic it made.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.history import BULK, FIRST, LAST, History
from tests.tsdb import backfill, serving
from vz_traffic_exporter import cli
from vz_traffic_exporter.report.periods import boundaries

pytestmark = pytest.mark.slow

FROM, TO = "2026-09-01T00:00:00Z", "2026-11-01T00:00:00Z"  # two calendar months


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, History]]:
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus and promtool")
    data = tmp_path_factory.mktemp("history") / "data"
    history = History()
    backfill(history.blocks(), data)
    with serving(data) as url:
        yield url, history


def report_rows(
    capsys: pytest.CaptureFixture[str], url: str, *args: str
) -> tuple[dict[tuple[str, str, str], tuple[int, str, int]], str]:
    assert (
        cli.main(["report", f"--prometheus.url={url}", f"--from={FROM}", f"--to={TO}", "--format=csv", *args])
        == 0
    )
    captured = capsys.readouterr()
    found = {}
    for row in csv.DictReader(io.StringIO(captured.out)):
        found[(row["start"], row["veid"], row["direction"])] = (
            int(row["bytes"]),
            row["quota_bytes"],
            int(row["resets"]),
        )
    return found, captured.err


def stamped(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def stamp(t: float) -> str:
    return stamped(t).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("step", ["month", "day", "hour"])
def test_every_row_equals_the_truth(
    prometheus: tuple[str, History], capsys: pytest.CaptureFixture[str], step: str
) -> None:
    url, history = prometheus
    cuts = [t.timestamp() for t in boundaries(stamped(FIRST), stamped(LAST), step)]
    truth = history.truth(cuts, {"1", "2"})  # the quota classes the history exports
    found, err = report_rows(capsys, url, f"--step={step}")
    # Rows of no traffic (a container whose kept series did not grow) are the report's to show or not.
    got = {key: value[0] for key, value in found.items() if value[0]}
    expected = {(stamp(t0), veid, d): nbytes for (t0, veid, d), nbytes in truth.items() if nbytes}
    assert got == expected, f"{len(got.items() ^ expected.items())} rows differ"
    assert len(got) >= (len(cuts) - 1) * BULK * 3  # every container, direction and period at least
    print(f"--step {step}: {len(expected)} rows of traffic, all equal to the truth")
    # The one reset (102's class-1 "in" series) is counted and said.
    resets = {key: value[2] for key, value in found.items() if value[2]}
    assert {key[1:] for key in resets} == {("102", "in"), ("102", "total")}
    assert "went down 1 times" in err
    # Quotas: the largest an instance exports, for that direction.
    assert {v[1] for k, v in found.items() if k[1:] == ("101", "total")} == {"1000000000"}
    assert {v[1] for k, v in found.items() if k[1:] == ("105", "out")} == {"500000000"}


def test_classes_and_containers_chosen(
    prometheus: tuple[str, History], capsys: pytest.CaptureFixture[str]
) -> None:
    url, history = prometheus
    cuts = [FIRST, LAST]
    truth = history.truth(cuts, {"0", "2"})
    found, _ = report_rows(capsys, url, "--classes=0,2", "--veid=103", "--veid=104")
    assert {key[1] for key in found} == {"103", "104"}
    assert {k: v[0] for k, v in found.items() if v[0]} == {
        (stamp(t0), veid, d): b for (t0, veid, d), b in truth.items() if veid in ("103", "104") and b
    }


def test_the_html_page_renders_in_a_real_browser_with_its_bars(
    prometheus: tuple[str, History], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    url, history = prometheus
    page = tmp_path / "report.html"
    args = ["report", f"--prometheus.url={url}", f"--from={FROM}", f"--to={TO}", "--format=html"]
    assert cli.main([*args, f"--output={page}"]) == 0
    capsys.readouterr()
    text = page.read_text()
    for fetch in ("<script", "<link", "src=", "href=", "@import", "url("):  # nothing loaded from elsewhere
        assert fetch not in text, fetch
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    rendered = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0 and dom.stdout.rstrip().endswith("</html>")
    assert "Uncaught" not in dom.stderr and "ERROR:CONSOLE" not in dom.stderr
    containers = {veid for (_, veid, _), nbytes in history.truth([FIRST, LAST], {"1", "2"}).items() if nbytes}
    charts = min(len(containers), 20)  # the 20 largest
    days = round((LAST - FIRST) / 86400)
    assert dom.stdout.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == charts
    assert dom.stdout.count('class="bar in"') == dom.stdout.count('class="bar out"') == charts * days
