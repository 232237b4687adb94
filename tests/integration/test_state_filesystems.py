"""The state file on a full and on a read-only filesystem (a small tmpfs, in a mount namespace of the test's).

Totals survive in memory, the error is logged once per change of reason,
and the file on disk is never truncated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, subprocess, sys
    from vz_traffic_exporter.accounting import Accumulator, Observation
    from vz_traffic_exporter.config import Config, KernelConfig, NetfilterConfig
    from vz_traffic_exporter.exporter import Exporter
    from vz_traffic_exporter.runner import SystemRunner
    from vz_traffic_exporter.state import StateFile

    directory = sys.argv[1]
    records = []
    logging.basicConfig(level=logging.ERROR)
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger().addHandler(Keep())
    path = os.path.join(directory, "state.json")
    off = KernelConfig(False, False, False, False)
    config = Config(discovery=(), netfilter=NetfilterConfig(backend="off"), kernel=off)
    exporter = Exporter(config, SystemRunner(), procfs="/nonexistent", sysfs="/nonexistent",
                        state=StateFile(path), save_state=True)

    def grow(n):
        series = [("ip", str(i), f"192.0.2.{i % 250}", "0", "out") for i in range(n)]
        obs = [Observation(("c", i), key, n, n * 100) for i, key in enumerate(series)]
        exporter.accumulator.update("iptables", obs)

    grow(10)
    exporter.save()
    small = open(path, "rb").read()
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as f:   # fill the filesystem
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    grow(3000)              # a larger state that no longer fits beside the old one
    for _ in range(3):
        exporter.save()
    full_log = list(records)
    after_full = open(path, "rb").read()
    os.unlink(os.path.join(directory, "filler"))
    exporter.save()
    saved = json.load(open(path))
    subprocess.run(["mount", "-o", "remount,ro", directory], check=True)
    grow(3001)
    for _ in range(3):
        exporter.save()
    print(json.dumps({
        "full_log": full_log, "unchanged_when_full": after_full == small,
        "series_saved_after_room": len(saved["series"]),
        "ro_log": records[len(full_log):],
        "total": exporter.accumulator.total(("ip", "5", "192.0.2.5", "0", "out")),
        "still_there": open(path, "rb").read() == json.dumps(saved, separators=(",", ":")).encode(),
    }))
    """
)


def test_a_full_and_a_read_only_filesystem_lose_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a tmpfs of the test's own")
    directory = tmp_path / "small"
    directory.mkdir()
    shell = f'mount -t tmpfs -o size=1m tmpfs {directory} && exec {sys.executable} -c "$0" {directory}'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    [full] = got["full_log"]  # once, for three failed saves
    assert "no space left" in full and "atomic save" in full and "bytes" in full and "kept in memory" in full
    assert got["unchanged_when_full"]  # nothing truncated
    assert got["series_saved_after_room"] == 3000  # once there was room, everything was written
    errors = [line for line in got["ro_log"] if "cannot write" in line]
    assert len(errors) == 1 and "Read-only file system" in errors[0]
    assert got["total"] == [3001, 300100]  # the raw counter went 10, 3000, 3001: in memory all along
    assert got["still_there"]
    assert not list(directory.iterdir())  # the tmpfs was the namespace's: nothing left on the host
