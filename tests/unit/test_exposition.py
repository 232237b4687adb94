from __future__ import annotations

import json
import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, ReplayRunner, managed_runner
from tests.golden import GOLDEN, assert_golden
from vz_traffic_exporter import cli
from vz_traffic_exporter.config import load
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.exposition import collector, http
from vz_traffic_exporter.runner import CommandError
from vz_traffic_exporter.state import StateFile

LAB = str(FIXTURES / "lab.yaml")
ROOT = Path(__file__).resolve().parents[2]


EMPTY_ROOT = str(FIXTURES / "empty")  # a /proc and /sys with nothing of ours


def dump(capsys: pytest.CaptureFixture[str], runner: ReplayRunner, *args: str) -> str:
    argv = ["--config", LAB, f"--path.procfs={EMPTY_ROOT}", f"--path.sysfs={EMPTY_ROOT}", *args, "dump"]
    assert cli.main(argv, runner=runner) == 0
    return capsys.readouterr().out


def normalised(text: str) -> str:
    """Durations and creation times (the clock's) zeroed."""
    return re.sub(
        r"((?:vz_traffic_source_duration|vz_traffic_container_first_seen_timestamp"
        r"|vz_traffic_quota_cycle_(?:start|end)_timestamp)_seconds\{[^}]*\}) \S+",
        r"\1 0.0",
        text,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_dump_matches_golden_exposition(capsys: pytest.CaptureFixture[str]) -> None:
    text = dump(capsys, managed_runner())
    assert_golden(normalised(text), "dump/iptables.prom")
    assert "_created" not in text


# The contract fixes this name; promtool's linter dislikes "counter" inside it.
CONTRACT_NAMES_PROMTOOL_DISLIKES = {
    "vz_traffic_counter_resets_total metric name should not include type 'counter'",
}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize("golden", sorted(path.name for path in (GOLDEN / "dump").glob("*.prom")))
def test_golden_exposition_passes_promtool(golden: str) -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=(GOLDEN / "dump" / golden).read_bytes(),
        capture_output=True,
        check=False,
    )
    findings = set((proc.stdout + proc.stderr).decode().strip().splitlines())
    assert findings <= CONTRACT_NAMES_PROMTOOL_DISLIKES
    assert proc.returncode in ((3,) if findings else (0,))


def test_values_come_from_the_rule_counters(capsys: pytest.CaptureFixture[str]) -> None:
    got = samples(dump(capsys, managed_runner()))

    def ip(veid: str, addr: str, klass: str, direction: str) -> float:
        labels = (("class", klass), ("direction", direction), ("ip", addr), ("veid", veid))
        return got[("vz_traffic_ip_bytes_total", labels)]

    assert ip("101", "192.0.2.11", "1", "out") == 1280
    assert ip("102", "192.0.2.12", "0", "in") == 4112
    assert ip("101", "2001:db8::b", "1", "out") == 340
    assert ip("102", "2001:db8::c", "1", "in") == 468


def test_a_failing_source_is_down_and_the_rest_still_answers(capsys: pytest.CaptureFixture[str]) -> None:
    runner = managed_runner()
    runner.outputs[("ip6tables-save", "-c", "-t", "filter")] = CommandError(
        ["ip6tables-save"], 1, "ip6tables-save: broken"
    )
    got = samples(dump(capsys, runner))
    assert got[("vz_traffic_source_up", (("source", "iptables"),))] == 0
    assert got[("vz_traffic_source_up", (("source", "static"),))] == 1
    assert got[("vz_traffic_container_info", (("name", "ct101"), ("veid", "101")))] == 1


def test_backend_iptables_without_iptables_is_a_source_error(
    capsys: pytest.CaptureFixture[str], write_config: Any
) -> None:
    path = write_config("netfilter: {backend: iptables}\n")
    runner = ReplayRunner({}, installed=())
    assert cli.main(["dump", "--config", path, f"--path.sysfs={EMPTY_ROOT}"], runner=runner) == 0
    got = samples(capsys.readouterr().out)
    assert got[("vz_traffic_source_up", (("source", "iptables"),))] == 0


def test_backend_auto_without_iptables_is_silently_off(
    capsys: pytest.CaptureFixture[str], write_config: Any
) -> None:
    runner = ReplayRunner({}, installed=())
    argv = ["dump", "--config", write_config("{}\n"), f"--path.sysfs={EMPTY_ROOT}"]
    assert cli.main(argv, runner=runner) == 0
    assert 'source="iptables"' not in capsys.readouterr().out


def test_sources_survive_an_unexpected_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = Exporter(load(LAB), managed_runner(), procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)

    def boom(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(exporter, "_read_netfilter", boom)
    snap = exporter.poll()
    assert {s.name: s.up for s in snap.statuses} == {"static": True, "iptables": False}


def call(app: http.WSGIApp, path: str, **headers: str) -> tuple[str, bytes]:
    status: list[str] = []
    environ = {
        **headers,
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "wsgi.input": BytesIO(),
        "SERVER_NAME": "x",
        "SERVER_PORT": "1",
        "wsgi.url_scheme": "http",
        "HTTP_ACCEPT": "text/plain",
    }
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], body


def test_http_landing_page_metrics_and_404() -> None:
    exporter = Exporter(load(LAB), managed_runner(), procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    app = http.make_app(lambda: collector.render(exporter.poll()), "/metrics")
    status, body = call(app, "/")
    assert status.startswith("200") and b'href="/metrics"' in body
    status, body = call(app, "/metrics")
    assert status.startswith("200") and b"vz_traffic_ip_bytes_total{" in body
    assert call(app, "/nothing")[0].startswith("404")


def test_making_the_app_reads_nothing() -> None:
    runner = managed_runner()
    exporter = Exporter(load(LAB), runner, procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    http.make_app(lambda: collector.render(exporter.poll()), "/metrics")
    assert runner.calls == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":10057", ("", 10057)), ("127.0.0.1:9", ("127.0.0.1", 9)), ("[::1]:80", ("::1", 80))],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert http.parse_listen_address(text) == expected


def test_concurrent_scrapes_never_read_the_kernel_twice_at_once() -> None:
    import threading
    import time

    inner = managed_runner()
    in_flight = 0
    most = 0
    guard = threading.Lock()

    class SlowRunner:
        def run(self, argv: Any, *, stdin: Any = None, timeout: Any = None) -> str:
            nonlocal in_flight, most
            with guard:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.05)
            with guard:
                in_flight -= 1
            return inner.run(argv, stdin=stdin)

        def which(self, program: str) -> Any:
            return inner.which(program)

        def netlink(self) -> Any:
            return None

    exporter = Exporter(load(LAB), SlowRunner(), procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    app = http.make_app(lambda: collector.render(exporter.poll()), "/metrics")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(call(app, "/metrics")[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["200 OK"] * 8
    assert most == 1
    reads = [argv for argv, _ in inner.calls if argv[0] == "iptables-save"]
    assert 1 <= len(reads) < 8  # waiting scrapes share the read that ran while they waited


def test_dump_neither_reads_nor_writes_the_state_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    state = tmp_path / "state.json"
    settings = yaml.safe_load((FIXTURES / "lab.yaml").read_text())
    config.write_text(yaml.safe_dump({**settings, "state": {"file": str(state)}}))
    ipv4 = ("iptables-save", "-c", "-t", "filter")
    key = (
        "vz_traffic_ip_bytes_total",
        (("class", "1"), ("direction", "out"), ("ip", "192.0.2.11"), ("veid", "101")),
    )
    # A serving exporter saw 99999 bytes, then the rules were zeroed: its total is 99999 + 1280.
    runner = managed_runner()
    counted = str(runner.outputs[ipv4])
    runner.outputs[ipv4] = counted.replace("[10:1280] -A VZTRAFFIC-OUT-1", "[50:99999] -A VZTRAFFIC-OUT-1")
    serving = Exporter(load(str(config)), runner, procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    serving.state = StateFile(str(state))
    serving.poll()
    runner.outputs[ipv4] = counted
    assert samples(collector.render(serving.poll()).decode())[key] == 99999 + 1280
    saved = state.read_text()

    argv = ["--config", str(config), f"--path.procfs={EMPTY_ROOT}", f"--path.sysfs={EMPTY_ROOT}", "dump"]
    assert cli.main(argv, runner=managed_runner()) == 0
    assert samples(capsys.readouterr().out)[key] == 1280  # what the rules hold now
    assert state.read_text() == saved


def test_a_read_that_only_saw_growth_is_not_saved_until_a_background_poll(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    runner = managed_runner()
    exporter = Exporter(load(LAB), runner, procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    exporter.state = StateFile(str(state))
    exporter.poll()  # first sight of every counter: saved
    first = state.read_text()
    saved = json.loads(first)
    ipv4 = ("iptables-save", "-c", "-t", "filter")
    runner.outputs[ipv4] = str(runner.outputs[ipv4]).replace(
        "[10:1280] -A VZTRAFFIC-OUT-1", "[11:1408] -A VZTRAFFIC-OUT-1"
    )
    exporter.poll()  # growth only: the kernel still holds it
    assert state.read_text() == first
    exporter.poll(persist=True)  # a background poll saves whatever it found
    grown = json.loads(state.read_text())
    assert grown != saved and grown["counters"] != saved["counters"]
    runner.outputs[ipv4] = str(runner.outputs[ipv4]).replace(
        "[11:1408] -A VZTRAFFIC-OUT-1", "[1:128] -A VZTRAFFIC-OUT-1"
    )
    exporter.poll()  # a reset is saved at once
    assert json.loads(state.read_text())["resets"] == {"iptables": 1}


def test_series_written_straight_to_text_escape_like_the_library() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import CollectorRegistry

    from vz_traffic_exporter.exposition.collector import METRICS, _labeller, _series_text

    name = "vz_traffic_interface_bytes_total"
    odd = ("ct\\1", 'veth"x"\n0', "in")
    labels = _labeller(METRICS[name][2])
    ours = _series_text(name, [(labels(odd), 12884901893), (labels(("101", "veth101.0", "out")), 0)])

    family = CounterMetricFamily(name, METRICS[name][1], labels=METRICS[name][2])
    family.add_metric(list(odd), 12884901893)
    family.add_metric(["101", "veth101.0", "out"], 0)

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    library = generate_latest(registry).decode()
    # The same text but the values: whole numbers as integers (exact), where the library writes floats.
    assert [line.rsplit(" ", 1)[0] for line in ours.splitlines()] == [
        line.rsplit(" ", 1)[0] for line in library.splitlines()
    ]
    assert [line.rsplit(" ", 1)[1] for line in ours.splitlines() if not line.startswith("#")] == [
        "12884901893",
        "0",
    ]
    assert [float(line.rsplit(" ", 1)[1]) for line in library.splitlines() if not line.startswith("#")] == [
        12884901893.0,
        0.0,
    ]
    [parsed] = text_string_to_metric_families(ours)
    assert parsed.samples[0].labels == {"veid": "ct\\1", "interface": 'veth"x"\n0', "direction": "in"}


def test_a_kept_renderer_writes_what_a_fresh_one_writes_scrape_after_scrape() -> None:
    runner = managed_runner()
    exporter = Exporter(load(LAB), runner, procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    renderer = collector.Renderer()
    ipv4 = ("iptables-save", "-c", "-t", "filter")
    counted = str(runner.outputs[ipv4])
    texts = []
    for grown in ("[10:1280]", "[10:1280]", "[12:1536]", "[12:1536]"):
        runner.outputs[ipv4] = counted.replace("[10:1280] -A VZTRAFFIC-OUT-1", f"{grown} -A VZTRAFFIC-OUT-1")
        snap = exporter.poll()
        kept, fresh = renderer(snap).decode(), collector.render(snap).decode()
        assert normalised(kept) == normalised(fresh)
        texts.append(kept)
    key = (
        "vz_traffic_ip_bytes_total",
        (("class", "1"), ("direction", "out"), ("ip", "192.0.2.11"), ("veid", "101")),
    )
    assert [samples(text)[key] for text in texts] == [1280, 1280, 1536, 1536]


def test_gzip_members_of_unchanged_series_are_not_compressed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    runner = managed_runner()
    exporter = Exporter(load(LAB), runner, procfs=EMPTY_ROOT, sysfs=EMPTY_ROOT)
    renderer = collector.Renderer()
    app = http.make_app(lambda: renderer.parts(exporter.poll()), "/metrics")
    compressed: list[int] = []
    real = gzip.compress
    monkeypatch.setattr(gzip, "compress", lambda data, **kw: compressed.append(len(data)) or real(data, **kw))
    bodies, counts = [], []
    for _ in range(3):
        compressed.clear()
        status, body = call(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip")
        assert status.startswith("200")
        bodies.append(gzip.decompress(body))  # every member, in order
        counts.append(list(compressed))
    parts = [part.data for part in renderer.parts(exporter.poll()) if part.data]
    plain = b"".join(parts)
    assert (
        bodies[0].split(b"# HELP vz_traffic_class_info")[0] == plain.split(b"# HELP vz_traffic_class_info")[0]
    )
    # Every part at the first scrape; then only the library's small part, written anew at each scrape.
    assert len(parts) >= 4 and counts[0] == [len(part) for part in parts[:-1]] + [counts[0][-1]]
    assert [len(c) for c in counts[1:]] == [1, 1] and max(counts[1] + counts[2]) < max(counts[0])
    ipv4 = ("iptables-save", "-c", "-t", "filter")
    runner.outputs[ipv4] = str(runner.outputs[ipv4]).replace(
        "[10:1280] -A VZTRAFFIC-OUT-1", "[11:1408] -A VZTRAFFIC-OUT-1"
    )
    compressed.clear()
    status, body = call(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip")
    # The address series' two parts (bytes and packets), and the library's.
    assert len(compressed) == 3 and b'veid="101"} 1408\n' in gzip.decompress(body)


def test_series_lines_written_piece_by_piece_are_the_lines_written_at_once() -> None:
    count = 2 * collector._LINES_AT_ONCE + 17  # pieces, and a last one not full
    rows = [(("ip", str(i), f"192.0.2.{i % 250}", "1", "in"), i, 10 * i + (1 << 70)) for i in range(count)]
    labels = [f'veid="{i}"' for i in range(count)]
    text = collector._lines(collector.IP_BYTES, labels, rows, 2).decode()
    head = f"# HELP {collector.IP_BYTES} "
    assert text.startswith(head) and text.count("\n") == count + 2
    lines = text.splitlines()[2:]
    assert lines == [f'{collector.IP_BYTES}{{veid="{i}"}} {10 * i + (1 << 70)}' for i in range(count)]


def test_resets_only_for_counting_sources_and_the_quota_classes_of_this_node(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    config = write_config(
        "containers: {static: [{veid: '101', ips: [192.0.2.11]}], discovery: [static]}\n"
        "network_classes: [{id: 1, networks: [198.51.100.0/24]}]\n"
        "netfilter: {backend: 'off'}\n"
        "kernel: {interfaces: true, venetstat: false, vznetstat: false, nft_counters: false}\n"
    )
    argv = [
        "--config",
        config,
        "dump",
        "--path.procfs=/nonexistent",
        f"--path.sysfs={ROOT / 'tests/fixtures/sys'}",
    ]
    assert cli.main(argv, runner=ReplayRunner({}, installed=())) == 0
    text = capsys.readouterr().out
    resets = [line for line in text.splitlines() if line.startswith("vz_traffic_counter_resets_total{")]
    assert resets == ['vz_traffic_counter_resets_total{source="interfaces"} 0.0']
    classes = [line for line in text.splitlines() if line.startswith("vz_traffic_quota_class_info{")]
    assert classes == [
        'vz_traffic_quota_class_info{class="0"} 1.0',
        'vz_traffic_quota_class_info{class="1"} 1.0',
    ]
