"""report: the exact rule, the periods, the formats, and every way a server can fail."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable

import pytest

from vz_traffic_exporter import cli
from vz_traffic_exporter.report import Progress
from vz_traffic_exporter.report.compute import Row, SeriesUse, chosen, increase, rows
from vz_traffic_exporter.report.formats import as_csv, as_json
from vz_traffic_exporter.report.periods import UsageError, boundaries, calendar, percentile_of, period, stamp
from vz_traffic_exporter.report.rates import container_percentiles, cuts, interval_bytes, nearest_rank

UTC = timezone.utc


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(0, 100), (10, 150), (20, 400)], (300, 0)),  # value(t1) - value(t0)
        ([(5, 100), (10, 150), (20, 400)], (400, 0)),  # no sample at or before t0: from 0
        ([(0, 100), (10, 150), (15, 30), (20, 90)], (50 + 30 + 60, 1)),  # a drop counts the value after it
        ([(0, 100), (10, 150), (20, 400), (21, 500)], (300, 0)),  # after t1: the next period's
        ([(-5, 7), (0, 100)], (0, 0)),  # nothing in (t0, t1]
        ([(0, 2.0**53), (10, 2.0**53 + 2)], (2, 0)),  # exact up to 2**53
    ],
)
def test_a_series_traffic_in_a_period(samples: list[tuple[float, float]], expected: tuple[int, int]) -> None:
    assert increase(samples, 0, 20) == expected


def test_per_address_series_win_over_kernel_series_per_instance_and_container() -> None:
    ip = SeriesUse("101", "in", "1", "job/a", True)
    kernel_a = SeriesUse("101", "in", "1", "job/a", False)
    kernel_b = SeriesUse("101", "in", "1", "job/b", False)  # another node: no per-address series there
    assert chosen({ip: (5, 0), kernel_a: (7, 0), kernel_b: (9, 0)}) == {ip, kernel_b}
    assert chosen({ip: (0, 0), kernel_a: (0, 0)}) == {ip}  # nothing moved: either, never both
    # A per-address series kept flat (its rules gone, its source failing) does not hide live kernel series.
    assert chosen({ip: (0, 0), kernel_a: (7, 0), kernel_b: (9, 0)}) == {kernel_a, kernel_b}


def test_a_series_with_no_known_start_counts_from_its_first_sample() -> None:
    samples = [(5, 100), (10, 150), (20, 400)]
    assert increase(samples, 0, 20, start=0) == (400, 0)  # made after t0
    assert increase(samples, 0, 20, start=None) == (300, 0)  # not known: a lower bound
    assert increase(samples, 0, 20, start=120) == (100 + 50 + 250, 1)  # a value at t0 above the first sample


def test_rows_of_a_series_without_a_known_start_are_incomplete_in_the_counted_classes() -> None:
    unknown = SeriesUse("101", "in", "1", "job/a", True)
    other = SeriesUse("102", "out", "2", "job/a", True)  # class 2 not counted: its rows stay complete
    got = rows("S", "E", {unknown: (5, 0), other: (3, 0)}, {"1"}, {}, None, [unknown, other])
    assert [(r.veid, r.direction, r.complete) for r in got] == [
        ("101", "in", False),
        ("101", "out", True),
        ("101", "total", False),
    ]


def test_rows_sum_addresses_instances_and_classes_with_a_total() -> None:
    traffic = {
        SeriesUse("101", "in", "1", "job/a", True): (100, 0),
        SeriesUse("101", "in", "2", "job/a", True): (10, 0),
        SeriesUse("101", "out", "1", "job/b", True): (7, 1),
        SeriesUse("101", "out", "0", "job/b", True): (1000, 0),  # class 0: not counted
        SeriesUse("102", "in", "1", "job/a", True): (5, 0),
    }
    got = rows("S", "E", traffic, {"1", "2"}, {("101", "total"): 200}, None)
    assert [(r.veid, r.direction, r.bytes, r.quota_bytes, r.resets) for r in got] == [
        ("101", "in", 110, None, 0),
        ("101", "out", 7, None, 1),
        ("101", "total", 117, 200, 1),
        ("102", "in", 5, None, 0),
        ("102", "out", 0, None, 0),
        ("102", "total", 5, None, 0),
    ]
    assert [r.veid for r in rows("S", "E", traffic, None, {}, {"102"})] == ["102"] * 3


def test_periods_and_boundaries() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert period(None, None, None, now) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert period("2025-12", None, None, now)[1] == datetime(2026, 1, 1, tzinfo=UTC)
    begin, end = period(None, "2026-10-31T22:00:00Z", "2026-11-01T02:00:00+01:00", now)
    assert [stamp(t) for t in boundaries(begin, end, "hour")] == [
        "2026-10-31T22:00:00Z",
        "2026-10-31T23:00:00Z",
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
    ]
    assert [stamp(t) for t in boundaries(*period("2026-10", None, None, now), "day")][-2:] == [
        "2026-10-31T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ]
    for args, why in (
        (("2026-13", None, None), "not a month"),
        ((None, "2026-11-01T00:00:00", "2026-11-02T00:00:00Z"), "no time zone"),
        ((None, "2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z"), "the period is empty"),
        (("2026-12", None, None), "ends in the future"),
        (("2026-10", "2026-10-01T00:00:00Z", None), "exclude each other"),
    ):
        with pytest.raises(UsageError, match=why):
            period(*args, now)


def test_bytes_are_integers_in_csv_and_json() -> None:
    big = [Row("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "101", "in", 12345678901234, None, 0)]
    assert as_csv(big).splitlines() == [
        "start,end,veid,direction,bytes,quota_bytes,resets,complete",
        "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,101,in,12345678901234,,0,true",
    ]
    assert json.loads(as_json(big)) == [
        {
            "start": "2026-10-01T00:00:00Z",
            "end": "2026-11-01T00:00:00Z",
            "veid": "101",
            "direction": "in",
            "bytes": 12345678901234,
            "quota_bytes": None,
            "resets": 0,
            "complete": True,
        }
    ]
    assert "e+" not in as_json(big) and "e+" not in as_csv(big)


# --- a server that answers as told ----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    started: list[HTTPServer] = []

    def start(answer: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer(self)

            def do_GET(self) -> None:
                if self.path != "/api/v1/status/flags":
                    self.send_error(404)
                    return
                answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def send(status: int, body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def report(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["report", f"--prometheus.url={url}", "--month=2026-10", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (send(401, b"Unauthorized\n"), "HTTP 401 Unauthorized"),
        (send(200, b"<html>a login page</html>"), "the answer is not JSON"),
        (send(200, b'{"status": "error", "error": "bad query"}'), "not a query result: bad query"),
        (
            send(422, b'{"status": "error", "error": "query processing would load too many samples"}'),
            "too many samples",
        ),
        (
            send(200, b'{"status": "success", "data": {"resultType": "matrix", "result": []}}'),
            "expected a vector",
        ),
    ],
)
def test_a_server_that_fails_or_answers_nonsense_is_one_line_and_exit_1(
    server: Any, capsys: pytest.CaptureFixture[str], answer: Any, why: str
) -> None:
    code, out, err = report(capsys, server(answer))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and why in err and "Traceback" not in err


def test_an_unreachable_server_and_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = report(capsys, "http://127.0.0.1:9")
    assert code == 1 and "cannot connect" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["report", "--month=2026-10"]) == 2
    assert "report needs --prometheus.url" in capsys.readouterr().err
    assert cli.main(["report", "--prometheus.url=ftp://x", "--month=2026-10"]) == 2
    assert "is not an http:// or https:// URL" in capsys.readouterr().err
    assert cli.main(["report", "--prometheus.url=http://x", "--month=2099-01"]) == 2
    assert "ends in the future" in capsys.readouterr().err


def test_an_empty_result_is_a_report_with_no_rows(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    empty = send(200, b'{"status": "success", "data": {"resultType": "vector", "result": []}}')
    code, out, _ = report(capsys, server(empty), "--format=csv")
    assert code == 0 and out == "start,end,veid,direction,bytes,quota_bytes,resets,complete\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_a_line_every_few_seconds_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    bar = Progress(terminal)
    for done in range(1, 5):
        bar(done, 4, "periods summed")
    assert terminal.getvalue().count("\r[") == 4 and terminal.getvalue().endswith(
        "4/4 periods summed\x1b[K\n"
    )
    log = io.StringIO()
    lines = Progress(log)
    for done in range(1, 100):
        lines(done, 100, "periods summed")  # well within EVERY seconds: nothing until the end
    lines(100, 100, "periods summed")
    assert log.getvalue() == "report: 100/100 periods summed\n"
    monkeypatch.setattr(Progress, "EVERY", 0.0)
    lines(3, 100, "periods summed")
    assert log.getvalue().endswith("report: 3/100 periods summed\n")


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ({"storage.tsdb.retention.time": "15d"}, True),  # October is more than 15 days ago
        ({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention": "0s"}, True),  # the default, 15d
        ({"storage.tsdb.retention.time": "1y"}, False),
        ({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention.size": "512MB"}, False),  # not known
    ],
)
def test_a_period_older_than_the_server_keeps_is_refused(
    server: Any, capsys: pytest.CaptureFixture[str], flags: dict[str, str], refused: bool
) -> None:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "GET":
            body = json.dumps({"status": "success", "data": flags}).encode()
        else:
            body = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'
        send(200, body)(handler)

    code, out, err = report(capsys, server(answer))
    if refused:
        assert code == 2 and out == "" and "the server keeps 15 days of samples" in err
    else:
        assert code == 0 and "keeps" not in err


def test_the_page_says_which_containers_have_incomplete_rows() -> None:
    from vz_traffic_exporter.report.formats import as_html

    rows_ = [
        Row("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "101", "in", 5, None, 0, complete=False),
        Row("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "102", "in", 5, None, 0),
    ]
    page = as_html(rows_, "t")
    assert page.count("(incomplete: a series had no known start)") == 1
    assert page.index("<h2>101") < page.index("incomplete:") < page.index("<h2>102")


def test_a_zone_and_a_cycle_day_make_the_periods() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    berlin = calendar("Europe/Berlin", "15")
    begin, end = period(None, None, None, now, berlin)  # the last complete cycle
    assert (stamp(begin, berlin.where), stamp(end, berlin.where)) == (
        "2026-10-15T00:00:00+02:00",
        "2026-11-15T00:00:00+01:00",
    )
    days = boundaries(begin, end, "day", berlin)
    assert len(days) == 32 and (days[11] - days[10]).total_seconds() == 25 * 3600  # 25 October
    assert [stamp(t, berlin.where) for t in boundaries(begin, end, "month", berlin)] == [
        "2026-10-15T00:00:00+02:00",
        "2026-11-15T00:00:00+01:00",
    ]
    for zone, day, why in (
        ("Mars/Olympus", None, "--timezone"),
        (None, "29", "--cycle-day"),
        (None, "x", "1..28"),
    ):
        with pytest.raises(UsageError, match=why):
            calendar(zone, day)


def test_the_percentile_flags() -> None:
    p = percentile_of("95", None)
    assert p is not None and (p.rank, p.interval, p.column) == (Fraction(95, 100), 300, "p95_bps")
    p = percentile_of("99.9", "1m")
    assert p is not None and (p.rank, p.interval, p.column) == (Fraction(999, 1000), 60, "p99.9_bps")
    assert percentile_of(None, None) is None
    for text, interval, why in (
        ("0", None, "1..100"),
        ("101", None, "1..100"),
        ("95", "0s", "--percentile-interval"),
        ("95", "2d", "--percentile-interval"),
        (None, "5m", "goes with --percentile"),
    ):
        with pytest.raises(UsageError, match=why):
            percentile_of(text, interval)


def test_the_nearest_rank_and_the_intervals_of_a_series() -> None:
    rates = [Fraction(v) for v in range(1, 21)]  # 1..20
    assert nearest_rank(rates, Fraction(95, 100)) == 19  # rank ceil(19.0): the top one is free
    assert nearest_rank(rates, Fraction(1)) == 20 and nearest_rank(rates, Fraction(1, 100)) == 1
    assert nearest_rank([], Fraction(95, 100)) == 0
    assert cuts(0, 1000, 300) == [0, 300, 600, 900, 1000]  # the last interval shorter
    # Values at the intervals' ends: a carried value (None), a drop, a gap that hides a change.
    nbytes, exact = interval_bytes([110, None, 150, 40, 45], 100)
    assert nbytes == [10, 0, 0, 0, 5] and exact == {2: 110, 3: 150}  # after a gap; a drop
    nbytes, exact = interval_bytes([110, 120], None)
    assert nbytes == [0, 10] and exact == {0: None}  # no start: the first interval from its samples
    nbytes, exact = interval_bytes([110, 120], 100, near=False, flagged=[1])
    assert nbytes == [0, 0] and exact == {0: 100, 1: 110}  # a start carried from far back; a drop seen
    assert container_percentiles(
        {("1", "in"): [[300, 0, 600]], ("1", "out"): [[0, 0, 30]]}, [0, 1, 2, 3], Fraction(1)
    ) == {
        ("1", "in"): 4800,
        ("1", "out"): 240,
        ("1", "total"): 4800,
    }


def test_a_percentile_of_an_html_page_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            ["report", "--prometheus.url=http://x", "--month=2026-10", "--percentile=95", "--format=html"]
        )
        == 2
    )
    assert "a percentile is not a sum" in capsys.readouterr().err
    assert (
        cli.main(["report", "--prometheus.url=http://x", "--month=2026-10", "--timezone=Nowhere/City"]) == 2
    )
    assert "--timezone" in capsys.readouterr().err
