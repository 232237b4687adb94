"""The hostile-input run of make test: a fixed seed, a few hundred cases per category (tests/fuzz.py).

``make fuzz`` runs the same with many more cases; its figures are in docs/fuzz.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261130
CASES = 300  # per category


def test_hostile_inputs_give_clear_errors_only_within_bounded_time_and_memory() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "--seed", str(SEED), "--cases", str(CASES), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = json.loads(proc.stdout)
    categories = summary["categories"]
    assert set(categories) == {"config", "web-config", "state", "kernel-file", "command-output"}
    for name, result in categories.items():
        assert result["cases"] == CASES, name
        assert (result["failures"], result["hangs"]) == (0, 0), (name, result["examples"])
    assert summary["peak_rss_mib"] < 100
    assert proc.returncode == 0, proc.stderr
