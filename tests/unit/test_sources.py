"""Sources: kernel files and tool outputs that no kernel makes are the source's error, not the exporter's."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ReplayRunner
from vz_traffic_exporter import cli
from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.runner import SystemRunner
from vz_traffic_exporter.sources.nft_counters import parse_nft_counters
from vz_traffic_exporter.sources.venetstat import parse_venetstat
from vz_traffic_exporter.sources.vznetstat import parse_vznetstat

PAIRS_ZERO = "".join(f" {0:>20}/{0:>20}" for _ in range(15))


def venetstat_line(veid: str, incoming: str, outgoing: str) -> str:
    return f"{veid} {incoming:>20}/{outgoing:>20}{PAIRS_ZERO}\n"


def vznetstat_text(packets: int, nbytes: int) -> str:
    return f"UUID CLASS INPUT(bytes) INPUT(pkts) OUTPUT(bytes) OUTPUT(pkts)\n101 1 {nbytes} {packets} 0 0\n"


def test_tool_output_that_is_not_utf8_is_decoded_with_replacement_characters() -> None:
    out = SystemRunner().run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'ct\\xff\\xfe1')"])
    assert out == "ct\ufffd\ufffd1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            venetstat_line("101", "9" * 400, "0"),
            r"venetstat:1: class 0 in: '9{39}\.\.\. is not a counter value",
        ),
        (venetstat_line("101", str(2**64), "0"), r"venetstat:1: class 0 in: '18446744073709551616' is not"),
        (
            venetstat_line("101", "5", "0")
            + venetstat_line("102", "0", "0")
            + venetstat_line("101", "9", "0"),
            r"venetstat:3: VEID 101 appears twice in one read \(first at venetstat:1\)",
        ),
    ],
)
def test_venetstat_values_outside_64_bits_and_repeated_lines_are_source_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_venetstat(text, "ipv4")


def test_the_largest_64_bit_value_is_a_counter() -> None:
    [first, *_] = parse_venetstat(venetstat_line("101", str(2**64 - 1), "0"), "ipv4")
    assert first.bytes == 2**64 - 1


@pytest.mark.parametrize(
    ("counter", "why"),
    [
        ({"bytes": -5, "packets": 1}, "bytes: -5 is not a counter value"),
        ({"bytes": 2**64, "packets": 1}, "bytes: 18446744073709551616 is not"),
        ({"bytes": 1.5, "packets": 1}, "bytes: 1.5 is not"),
        ({"bytes": "12", "packets": True}, "packets: True is not"),
    ],
)
def test_nft_counter_values_that_no_kernel_holds_are_source_errors(
    counter: dict[str, object], why: str
) -> None:
    item = {"counter": {"family": "netdev", "table": "ve_101", "name": "counter_i4_1", **counter}}
    with pytest.raises(ValueError, match=why):
        parse_nft_counters(json.dumps({"nftables": [item]}))


def test_a_repeated_nft_counter_is_a_source_error() -> None:
    item = {
        "counter": {"family": "netdev", "table": "ve_101", "name": "counter_i4_1", "bytes": 1, "packets": 1}
    }
    with pytest.raises(ValueError, match="appears twice"):
        parse_nft_counters(json.dumps({"nftables": [item, item]}))


def test_a_bad_kernel_file_fails_its_source_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_config
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "vz").mkdir()
    (tmp_path / "vz" / "venetstat").write_text(venetstat_line("101", "9" * 400, "0"))
    sysfs = tmp_path / "sys" / "class" / "net" / "veth101.0"
    (sysfs / "statistics").mkdir(parents=True)
    (sysfs / "ifindex").write_text("7\n")
    for name, value in (("rx_bytes", 1400), ("rx_packets", 10), ("tx_bytes", 2800), ("tx_packets", 20)):
        (sysfs / "statistics" / name).write_text(f"{value}\n")
    config = write_config(
        "containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\n"
        "kernel: {venetstat: true, vznetstat: false, nft_counters: false, interfaces: true}\n"
    )
    argv = ["--config", config, "dump", f"--path.procfs={tmp_path}", f"--path.sysfs={tmp_path / 'sys'}"]
    assert cli.main(argv, runner=ReplayRunner({})) == 0
    text = capsys.readouterr().out
    assert 'vz_traffic_source_up{source="venetstat"} 0.0' in text
    assert 'vz_traffic_source_up{source="interfaces"} 1.0' in text
    assert 'vz_traffic_interface_bytes_total{direction="out",interface="veth101.0",veid="101"} 1400\n' in text
    assert "9" * 40 not in text


def test_a_fifo_or_a_device_is_refused_wherever_a_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_config
) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    for argv in (["--config", str(fifo)], ["--config", "/dev/zero"]):
        assert cli.main([*argv, "check-config"]) == 2
        assert "not a regular file" in capsys.readouterr().err
    assert cli.main(["--config", write_config(f"networks_classes_file: {fifo}\n"), "check-config"]) == 2
    assert f"cannot read {fifo}: {fifo}: is a FIFO, not a regular file" in capsys.readouterr().err
    procfs = tmp_path / "proc"
    (procfs / "vz").mkdir(parents=True)
    os.mkfifo(procfs / "vz" / "venetstat")
    config = write_config(
        "containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\nkernel: {venetstat: true}\n"
    )
    assert cli.main(["--config", config, "dump", f"--path.procfs={procfs}", "--path.sysfs=/nonexistent"]) == 0
    assert 'vz_traffic_source_up{source="venetstat"} 0.0' in capsys.readouterr().out
    assert time.monotonic() - start < 5  # nothing waited for a writer


def test_a_saturated_vznetstat_packet_count_is_never_taken_as_a_wrap() -> None:
    acc = Accumulator()
    series = ("container", "vznetstat", "101", "1", "in", "ipv4")

    def read(packets: int, nbytes: int) -> None:
        [r, _] = parse_vznetstat(vznetstat_text(packets, nbytes), "ipv4")
        acc.update("vznetstat", [Observation(r.counter, series, r.packets or 0, r.bytes, r.packet_bits)])

    read(2**31 - 100, 1_000_000)
    read(2**31 - 1, 2_000_000)  # saturated: Virtuozzo 9's vznetstat stops here
    assert acc.total(series) == (2**31 - 1, 2_000_000)
    read(5, 2_500_000)  # the container's counters were reset and grew again: not a wrap
    assert acc.total(series) == (2**31 - 1 + 5, 2_000_000 + 2_500_000)
    read(2**32 - 10, 3_000_000)  # a 32-bit count (Virtuozzo 7) still wraps as before
    read(20, 3_100_000)
    assert acc.total(series)[0] == 2**31 - 1 + 5 + (2**32 - 10 - 5) + 30
