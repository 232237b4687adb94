"""A Prometheus TSDB from OpenMetrics text, and Debian's Prometheus serving it on 127.0.0.1.

``promtool tsdb create-blocks-from openmetrics`` reads its whole input once for
every two-hour block it makes, so a long history in one file costs blocks x
samples.  Fed one file per two-hour block, it reads each sample once: that is
what :func:`backfill` does, with a promtool per core while the next file is
written.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

BLOCK = 7200  # s: promtool's block, aligned to multiples of it since the epoch


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
def serving(data: Path, timeout: float = 120) -> Iterator[str]:
    """Debian's Prometheus on the TSDB at ``data``, on a free port of 127.0.0.1: yields its URL.

    Block durations are pinned to two hours so that it does not compact the history while it is queried.
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
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus on {data} did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
