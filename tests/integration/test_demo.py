"""`make demo` shows traffic for every lab container, both directions and classes, within 30 s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.demo import PREFIX
from netlab.lab import leftover_namespaces

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.netns


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
