from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ReplayRunner, fixture_text
from tests.golden import assert_golden
from tests.unit.test_exposition import normalised, samples
from vz_traffic_exporter import cli
from vz_traffic_exporter.config import load
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.runner import CommandError

UUID = "fbb30afa-e770-4081-9d9e-6b9c262eb091"
ROOT = Path(__file__).resolve().parents[2]


def kernel_runner(installed: tuple[str, ...] = ("vznetstat", "nft")) -> ReplayRunner:
    return ReplayRunner(
        {
            ("vznetstat", "-4", "-a"): fixture_text("cmd/vznetstat-4-a.txt"),
            ("vznetstat", "-6", "-a"): fixture_text("cmd/vznetstat-6-a.txt"),
            ("nft", "-j", "list", "ruleset", "netdev"): fixture_text("cmd/nft-j-list-ruleset-netdev.json"),
        },
        installed=installed,
    )


def kernel_dump(capsys: pytest.CaptureFixture[str], runner: ReplayRunner) -> str:
    argv = [
        "--config",
        str(FIXTURES / "kernel.yaml"),
        "dump",
        f"--path.procfs={FIXTURES / 'proc'}",
        f"--path.sysfs={FIXTURES / 'sys'}",
    ]
    assert cli.main(argv, runner=runner) == 0
    return capsys.readouterr().out


# Each case: the tools the node has (every kernel source is on in kernel.yaml), and its golden file.
KERNEL_CASES = {
    "kernel": ("vznetstat", "nft"),  # every source: the nft counters win where they count
    "kernel-openvz7": ("vznetstat",),  # no nft: venetstat's bytes with vznetstat's packets, nft_counters down
    "kernel-venetstat-only": (),  # no tools: bytes only, vznetstat and nft_counters down
}


@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_every_kernel_source_golden(capsys: pytest.CaptureFixture[str], case: str) -> None:
    assert_golden(normalised(kernel_dump(capsys, kernel_runner(KERNEL_CASES[case]))), f"dump/{case}.prom")


def test_kernel_values_and_source_priority(capsys: pytest.CaptureFixture[str]) -> None:
    got = samples(kernel_dump(capsys, kernel_runner()))

    def c(metric: str, veid: str, klass: str, direction: str, family: str) -> float:
        labels = (("class", klass), ("direction", direction), ("family", family), ("veid", veid))
        return got[(f"vz_traffic_container_{metric}_total", labels)]

    # Virtuozzo 7: venetstat bytes (the UUID's kernel VEID mapped back to its CTID)
    # with vznetstat packets
    assert (c("bytes", UUID, "0", "in", "ipv4"), c("packets", UUID, "0", "in", "ipv4")) == (67489, 155)
    assert (c("bytes", "102", "1", "out", "ipv4"), c("packets", "102", "1", "out", "ipv4")) == (7000, 12)
    assert c("bytes", "0", "0", "in", "ipv4") == 566093064  # the host
    assert c("bytes", "101", "0", "out", "ipv4") == 12692
    # Virtuozzo 9 nft counters win where a container has them.  They count a packet in every class
    # that holds its peer: class 2 (198.51.0.0/16) lies inside class 1 (everything), so class 1's
    # exclusive count is its counter less class 2's: 12884901893 - 180 bytes, 4294967296 - 3 packets.
    assert (c("bytes", UUID, "1", "out", "ipv4"), c("packets", UUID, "1", "out", "ipv4")) == (
        12884901893 - 180,
        4294967296 - 3,
    )
    assert (c("bytes", UUID, "2", "out", "ipv4"), c("packets", UUID, "2", "out", "ipv4")) == (180, 3)
    assert (c("bytes", "101", "1", "out", "ipv6"), c("packets", "101", "1", "out", "ipv6")) == (296, 2)
    # a class nobody configured shows only once it counted something
    assert (
        "vz_traffic_container_bytes_total",
        (("class", "5"), ("direction", "in"), ("family", "ipv4"), ("veid", "101")),
    ) not in got
    iface = got[
        (
            "vz_traffic_interface_bytes_total",
            (("direction", "out"), ("interface", "veth101.0"), ("veid", "101")),
        )
    ]
    assert iface == 5000
    assert (
        got[
            (
                "vz_traffic_interface_bytes_total",
                (
                    ("direction", "in"),
                    ("interface", "vme426f6594"),
                    ("veid", "b2de86d9-6539-4ccc-9120-928b33ed31b9"),
                ),
            )
        ]
        == 888
    )
    for source in ("venetstat", "vznetstat", "nft_counters", "interfaces", "veinfo", "static"):
        assert got[("vz_traffic_source_up", (("source", source),))] == 1, source


def test_required_but_absent_kernel_sources_are_down(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--config",
        str(FIXTURES / "kernel.yaml"),
        "dump",
        f"--path.procfs={FIXTURES / 'empty'}",
        f"--path.sysfs={FIXTURES / 'empty'}",
    ]
    assert cli.main(argv, runner=ReplayRunner({}, installed=())) == 0
    got = samples(capsys.readouterr().out)
    for source in ("venetstat", "vznetstat", "nft_counters", "interfaces", "veinfo"):
        assert got[("vz_traffic_source_up", (("source", source),))] == 0, source
    assert got[("vz_traffic_source_up", (("source", "static"),))] == 1


def test_auto_sources_stay_off_when_absent(capsys: pytest.CaptureFixture[str], write_config: Any) -> None:
    argv = [
        "--config",
        write_config("netfilter: {backend: 'off'}\n"),
        "dump",
        f"--path.procfs={FIXTURES / 'empty'}",
        f"--path.sysfs={FIXTURES / 'empty'}",
    ]
    assert cli.main(argv, runner=ReplayRunner({}, installed=())) == 0
    got = samples(capsys.readouterr().out)
    assert {k[1][0][1] for k in got if k[0] == "vz_traffic_source_up"} == {"static"}


def test_a_failing_vzlist_keeps_the_last_inventory(write_config: Any) -> None:
    runner = ReplayRunner(
        {("vzlist", "-a", "-j", "-o", "ctid,name,ip"): fixture_text("cmd/vzlist-a-j-vz7.json")},
        installed=("vzlist",),
    )
    config = load(write_config("containers: {discovery: [vzlist]}\nnetfilter: {backend: 'off'}\n"))
    config = dataclasses.replace(config, refresh_interval=0.001)  # every poll discovers again
    empty = str(FIXTURES / "empty")
    exporter = Exporter(config, runner, procfs=empty, sysfs=empty)
    first = exporter.poll()
    runner.outputs[("vzlist", "-a", "-j", "-o", "ctid,name,ip")] = CommandError(["vzlist"], 3, "boom")
    import time

    time.sleep(0.01)
    second = exporter.poll()
    assert set(second.inventory.containers) == set(first.inventory.containers) == {"101", UUID, "103"}
    assert {s.name: s.up for s in second.statuses}["vzlist"] is False


@pytest.mark.parametrize(
    ("tool", "fixture", "argv_tail"),
    [
        ("vzlist", "cmd/vzlist-a-j-vz7.json", "-a -j -o ctid,name,ip"),
        ("prlctl", "cmd/prlctl-list-a-j.json", "list -a -j -o uuid,envid,name,type,ip"),
    ],
)
def test_dump_with_a_recorded_tool_on_path(tmp_path: Path, tool: str, fixture: str, argv_tail: str) -> None:
    """The real program runs a command named vzlist/prlctl that prints a recorded output."""
    script = tmp_path / tool
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "{argv_tail}" ] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}\n'
        f"cat {FIXTURES / fixture}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "c.yaml"
    config.write_text(f"containers: {{discovery: [{tool}]}}\nnetfilter: {{backend: 'off'}}\n")
    env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vz_traffic_exporter",
            "--config",
            str(config),
            "dump",
            f"--path.procfs={FIXTURES / 'empty'}",
            f"--path.sysfs={FIXTURES / 'empty'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = samples(proc.stdout)
    assert got[("vz_traffic_source_up", (("source", tool),))] == 1
    assert got[("vz_traffic_container_info", (("name", "shop"), ("veid", UUID)))] == 1
