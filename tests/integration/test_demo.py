"""`make demo` shows traffic for every lab container, both directions and classes, within 30 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.demo import PREFIX
from netlab.lab import leftover_namespaces

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces")
def test_demo_shows_every_container_within_30_seconds() -> None:
    if leftover_namespaces(PREFIX):
        pytest.skip("a demo is running on this machine")
    proc = subprocess.run(
        [sys.executable, "-m", "netlab.demo", "--duration", "30", "--interval", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every container shows traffic in both directions and both classes" in proc.stdout
    assert "curl -s http://127.0.0.1:" in proc.stdout
    assert leftover_namespaces(PREFIX) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces")
def test_each_demo_starts_clean_and_demo_stop_counts_what_it_removed() -> None:
    if leftover_namespaces(PREFIX):
        pytest.skip("a demo is running on this machine")
    state = ROOT / ".demo" / "state.json"
    state.parent.mkdir(exist_ok=True)
    series = [[99, 99, 0, "ip", "1", "192.0.2.1", "0", "in"]]
    state.write_text(
        json.dumps({"version": 2, "boot_id": None, "counters": [], "series": series, "resets": {}})
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "netlab.demo", "--duration", "60", "--interval", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if "bytes by container" in line:  # running, with its lab
                break
        stopped = subprocess.run(
            [sys.executable, "-m", "netlab.demo", "--stop"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "demo stopped (5 namespaces removed)" in stopped.stdout  # node, peer, three containers
        demo.wait(30)
    finally:
        if demo.poll() is None:
            demo.kill()
            subprocess.run([sys.executable, "-m", "netlab.demo", "--stop"], cwd=ROOT, capture_output=True)
    log = (ROOT / ".demo" / "exporter.log").read_text()
    assert "does not exist yet: starting from zero" in log  # the last demo's totals were not taken over
    assert leftover_namespaces(PREFIX) == []
