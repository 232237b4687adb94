"""A Prometheus TSDB from OpenMetrics text, and Debian's Prometheus serving it on 127.0.0.1.

``promtool tsdb create-blocks-from openmetrics`` reads its whole input once for
every two-hour block it makes, so a long history in one file costs blocks x
samples.  Fed one file per two-hour block, it reads each sample once: that is
what :func:`backfill` does, with a promtool per core while the next file is
written.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

BLOCK = 7200  # s: promtool's block, aligned to multiples of it since the epoch
STORES = ("prometheus", "victoria-metrics")  # the servers of the query API the report is tested on


def _load(text: str, data: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".om", dir=data.parent, delete=False) as f:
        f.write(text)
    try:
        done = subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", f.name, str(data)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"promtool: {done.stderr.strip()[-2000:]}")
    finally:
        os.unlink(f.name)


def backfill(blocks: Iterable[str], data: Path, jobs: int = 0) -> int:
    """Write each OpenMetrics text (all samples within one two-hour block) into blocks under ``data``.

    At most ``jobs`` promtool processes at a time (0: one per core); returns the number of texts.
    """
    jobs = jobs or os.cpu_count() or 1
    data.mkdir(parents=True, exist_ok=True)
    count = 0
    with ThreadPoolExecutor(jobs) as pool:
        running: list[Future[None]] = []
        for text in blocks:
            running.append(pool.submit(_load, text, data))
            count += 1
            while len(running) >= jobs:  # bounded: never more texts in memory than promtools running
                running.pop(0).result()
        for job in running:
            job.result()
    return count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(data: Path, timeout: float = 120, compacted: bool = False) -> Iterator[str]:
    """Debian's Prometheus on the TSDB at ``data``, on a free port of 127.0.0.1: yields its URL.

    Block durations are pinned to two hours so that it does not compact the history while it is queried;
    compacted: it compacts the history first, as it does a month it scraped (blocks of up to 31 days), and
    is yielded once its blocks stop changing.
    """
    config = data.parent / "prometheus.yml"
    config.write_text("global: {}\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=100y",
            *(
                []
                if compacted
                else ["--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"]
            ),
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(url, proc, f"Prometheus on {data}", timeout)
        if compacted:
            _settled(data)
        yield url
    finally:
        _stop(proc)


def _settled(data: Path, quiet: float = 90.0) -> None:
    """Until the blocks under data have not changed for quiet seconds (Prometheus plans its compactions once
    a minute)."""
    blocks, since = None, time.monotonic()
    while time.monotonic() - since < quiet:
        now = sorted(p.name for p in data.iterdir() if (p / "meta.json").exists())
        if now != blocks:
            blocks, since = now, time.monotonic()
        time.sleep(5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """A server ended: asked to, then made to after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    """Until the server at url answers its readiness check (Prometheus's /-/ready, else /health)."""
    check = f"{url}/-/ready" if what.startswith("Prometheus") else f"{url}/health"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(check, timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.2)


def _as_prometheus_text(block: str) -> bytes:
    """OpenMetrics sample lines (timestamps in seconds) as Prometheus text lines (in milliseconds)."""
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("#"):
            head, _, stamp = line.rpartition(" ")
            lines.append(f"{head} {round(float(stamp) * 1000)}\n")
    return "".join(lines).encode()


@contextmanager
def victoria_metrics(data: Path, blocks: Iterable[str], timeout: float = 120) -> Iterator[str]:
    """Debian's VictoriaMetrics (single node) on a free port of 127.0.0.1, holding the history of blocks
    (imported through /api/v1/import/prometheus): yields its URL.  Its flags are the package's defaults but
    the retention (the histories are older than its default month)."""
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            "victoria-metrics",
            f"-storageDataPath={data}",
            "-retentionPeriod=100y",
            f"-httpListenAddr=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(url, proc, "VictoriaMetrics", timeout)
        for block in blocks:
            request = urllib.request.Request(
                f"{url}/api/v1/import/prometheus", data=_as_prometheus_text(block)
            )
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
        with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=timeout) as answer:
            answer.read()
        yield url
    finally:
        _stop(proc)


@contextmanager
def store(kind: str, data: Path, blocks: Iterable[str]) -> Iterator[str]:
    """The history of blocks in a server of that kind (one of STORES), serving the query API: its URL."""
    needs = ("promtool", "prometheus") if kind == "prometheus" else ("victoria-metrics",)
    if any(shutil.which(tool) is None for tool in needs):
        pytest.skip(f"needs Debian's {kind}")
    if kind == "prometheus":
        backfill(blocks, data)
        with serving(data) as url:
            yield url
    else:
        with victoria_metrics(data, blocks) as url:
            yield url
