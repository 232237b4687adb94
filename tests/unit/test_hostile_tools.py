"""What real and broken tools print must never take the exporter down (issue: safe on a production node).

The real samples are other people's captures, read where they are kept
(``../shared/real-samples``), never copied into the project.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ReplayRunner
from vz_traffic_exporter import cli
from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.config import ConfigError, load
from vz_traffic_exporter.discovery.prlctl import ARGV as PRLCTL
from vz_traffic_exporter.discovery.prlctl import parse_prlctl_json
from vz_traffic_exporter.discovery.vzlist import ARGV as VZLIST
from vz_traffic_exporter.discovery.vzlist import parse_vzlist_json
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.runner import SystemRunner
from vz_traffic_exporter.sources.nft_counters import parse_nft_counters
from vz_traffic_exporter.sources.venetstat import parse_venetstat
from vz_traffic_exporter.sources.vznetstat import parse_vznetstat

REAL = Path(__file__).resolve().parents[3] / "shared" / "real-samples"


def real_sample(relative: str) -> str:
    path = REAL / relative
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared real samples sit beside the project)")
    return path.read_text()


def info_names(text: str) -> dict[str, str]:
    """veid -> name of vz_traffic_container_info, parsed the way Prometheus parses it."""
    return {
        s.labels["veid"]: s.labels["name"]
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "vz_traffic_container_info"
    }


def dump(capsys: pytest.CaptureFixture[str], write_config, runner: ReplayRunner, source: str) -> str:  # type: ignore[no-untyped-def]
    config = write_config(f"containers: {{discovery: [{source}]}}\nnetfilter: {{backend: 'off'}}\n")
    argv = ["--config", config, "dump", "--path.procfs=/nonexistent", "--path.sysfs=/nonexistent"]
    assert cli.main(argv, runner=runner) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "argv", "listing"),
    [
        ("vzlist", VZLIST, [{"ctid": "10\udcff1", "name": "we\ud800b", "ip": ["192.0.2.11"]}]),
        ("prlctl", PRLCTL, [{"envid": "10\udcff1", "name": "we\ud800b", "ip": "192.0.2.11 "}]),
    ],
)
def test_a_lone_surrogate_in_a_name_or_ctid_is_written_as_a_replacement_character(
    capsys: pytest.CaptureFixture[str],
    write_config,
    source: str,
    argv: tuple[str, ...],
    listing: list[object],
) -> None:  # type: ignore[no-untyped-def]
    listing = [*listing, {"ctid": "102", "envid": "102", "name": "db", "ip": "192.0.2.12"}]
    if source == "vzlist":
        listing[1]["ip"] = ["192.0.2.12"]  # type: ignore[index]
    runner = ReplayRunner({argv: json.dumps(listing)}, installed=(source,))
    text = dump(capsys, write_config, runner, source)
    assert info_names(text) == {"10\ufffd1": "we\ufffdb", "102": "db"}
    assert f'vz_traffic_source_up{{source="{source}"}} 1.0' in text


def test_tool_output_that_is_not_utf8_is_decoded_with_replacement_characters() -> None:
    out = SystemRunner().run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'ct\\xff\\xfe1')"])
    assert out == "ct\ufffd\ufffd1"


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ('a\\b"c\nd', 'a\\\\b\\"c\\nd'),
        ("\\n", "\\\\n"),
        ("web \u00e9t\u00e9 \U0001f600", "web \u00e9t\u00e9 \U0001f600"),
        ("\udcff", "\ufffd"),
    ],
)
def test_label_values_are_escaped_exactly(
    capsys: pytest.CaptureFixture[str], write_config, name: str, written: str
) -> None:  # type: ignore[no-untyped-def]
    runner = ReplayRunner(
        {VZLIST: json.dumps([{"ctid": 101, "name": name, "ip": []}])}, installed=("vzlist",)
    )
    text = dump(capsys, write_config, runner, "vzlist")
    assert f'vz_traffic_container_info{{name="{written}",veid="101"}} 1\n' in text
    assert info_names(text)["101"] == name.replace("\udcff", "\ufffd")


@pytest.mark.parametrize("parse", [parse_vzlist_json, parse_prlctl_json])
def test_a_container_without_a_name_has_an_empty_name(parse) -> None:  # type: ignore[no-untyped-def]
    # OpenVZ 7 vzlist (vzlist.c print_name) and prlctl (handle_empty_str) print "-"; legacy vzlist null.
    listing = [
        {"ctid": "101", "envid": "101", "name": "-", "ip": []},
        {"ctid": "102", "envid": "102", "name": None, "ip": []},
        {"ctid": "103", "envid": "103", "name": "-web-", "ip": []},
    ]
    assert [c.name for c in parse(json.dumps(listing))] == ["", "", "-web-"]


def test_the_real_legacy_vzlist_sample() -> None:
    found = parse_vzlist_json(real_sample("vzlist-json/diamond-openvz-collector-fixture.txt"))
    assert found and all(c.veid.isdigit() and c.name == "" for c in found)
    assert found[0].veid == "113"


# --- kernel values --------------------------------------------------------------------------------------

PAIRS_ZERO = "".join(f" {0:>20}/{0:>20}" for _ in range(15))


def venetstat_line(veid: str, incoming: str, outgoing: str) -> str:
    return f"{veid} {incoming:>20}/{outgoing:>20}{PAIRS_ZERO}\n"


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


# --- reads that never end, work that grows too fast -----------------------------------------------------


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


@pytest.mark.slow
def test_a_classes_file_of_200000_lines_is_merged_in_linear_time(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    lines = [f"{1 + i % 15} 198.{18 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32" for i in range(131072)]
    lines += [f"{1 + i % 15} 2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64" for i in range(68928)]
    classes = tmp_path / "networks_classes"
    classes.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    config = load(write_config(f"networks_classes_file: {classes}\n"))
    took = time.monotonic() - start
    assert sum(len(k.networks) for k in config.classes.classes) == 200_000
    assert took < 15, took  # it took minutes when each line copied its class's list


# --- what Virtuozzo 9 really prints ---------------------------------------------------------------------


def vznetstat_text(packets: int, nbytes: int) -> str:
    return f"UUID CLASS INPUT(bytes) INPUT(pkts) OUTPUT(bytes) OUTPUT(pkts)\n101 1 {nbytes} {packets} 0 0\n"


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


def test_auto_reads_the_nft_counters_and_not_vznetstat_on_virtuozzo_9(write_config) -> None:  # type: ignore[no-untyped-def]
    runner = ReplayRunner(
        {
            ("nft", "list", "tables", "netdev"): "table netdev ve_101\n",
            ("nft", "-j", "list", "ruleset", "netdev"): json.dumps({"nftables": []}),
        },
        installed=("nft", "vznetstat"),
    )
    config = load(write_config("containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\n"))
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    statuses = {s.name: s.up for s in exporter.poll().statuses}
    assert statuses == {"static": True, "nft_counters": True}
    assert not [argv for argv, _ in runner.calls if argv[0] == "vznetstat"]
    forced = load(
        write_config(
            "containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\nkernel: {vznetstat: true}\n"
        )
    )
    assert [
        s.name for s in Exporter(forced, runner, procfs="/nonexistent", sysfs="/nonexistent").kernel.sources
    ] == [
        "nft_counters",
        "vznetstat",
    ]


def test_an_address_several_containers_claim_is_counted_for_none_and_logged_once(
    write_config, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    # OpenVZ 7 vzlist lists every address inside a container: a Docker bridge's (192.0.2.250 here) in several.
    listing = [
        {"ctid": "101", "name": "web", "ip": ["192.0.2.11", "192.0.2.250"]},
        {"ctid": "102", "name": "db", "ip": ["192.0.2.12", "192.0.2.250"]},
        {"ctid": "103", "name": "", "ip": ["192.0.2.250"]},
    ]
    runner = ReplayRunner({VZLIST: json.dumps(listing)}, installed=("vzlist",))
    config = load(write_config("containers: {discovery: [vzlist]}\nnetfilter: {backend: 'off'}\n"))
    config = dataclasses.replace(config, refresh_interval=0.0)  # every poll discovers again
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            inventory = exporter.poll().inventory
    assert dict(inventory.owners) == {"192.0.2.11": "101", "192.0.2.12": "102"}
    assert dict(inventory.conflicts) == {"192.0.2.250": ("101", "102", "103")}
    assert caplog.text.count("192.0.2.250 is claimed by veids 101, 102, 103") == 1
    listing[1]["ip"] = ["192.0.2.12"]
    listing[2]["ip"] = []
    runner.outputs[VZLIST] = json.dumps(listing)
    with caplog.at_level(logging.INFO):
        inventory = exporter.poll().inventory
    assert inventory.owners["192.0.2.250"] == "101" and not inventory.conflicts
    assert "192.0.2.250 is claimed by one container again" in caplog.text


class SlowRunner(ReplayRunner):
    """prlctl that hangs until released, as it does while it waits for a guest."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.release = threading.Event()
        self.slow = False

    def run(self, argv, *, stdin=None, timeout=None):  # type: ignore[no-untyped-def]
        if self.slow and argv[0] == "prlctl":
            assert self.release.wait(10)
        return super().run(argv, stdin=stdin, timeout=timeout)


def test_a_slow_discovery_never_holds_up_a_scrape(write_config) -> None:  # type: ignore[no-untyped-def]
    listing = [{"envid": "101", "name": "web", "ip": "192.0.2.11"}]
    runner = SlowRunner({PRLCTL: json.dumps(listing)}, installed=("prlctl",))
    config = load(
        write_config(
            "containers: {discovery: [prlctl], discovery_timeout: 2m}\nnetfilter: {backend: 'off'}\n"
        )
    )
    config = dataclasses.replace(config, refresh_interval=0.0)
    exporter = Exporter(
        config, runner, procfs="/nonexistent", sysfs="/nonexistent", background_discovery=True
    )
    assert set(exporter.poll().inventory.containers) == {"101"}  # the first discovery is waited for
    assert runner.timeouts[PRLCTL] == 120.0  # its own timeout, not the commands' 10 s
    runner.slow = True
    listing.append({"envid": "102", "name": "db", "ip": "192.0.2.12"})
    runner.outputs[PRLCTL] = json.dumps(listing)
    start = time.monotonic()
    for _ in range(5):
        snapshot = exporter.poll()
        assert set(snapshot.inventory.containers) == {"101"}  # the last inventory
    assert time.monotonic() - start < 2  # the read that started the discovery waited half a second
    assert {s.name: s.up for s in snapshot.statuses}["prlctl"] is True
    runner.release.set()
    deadline = time.monotonic() + 5
    while set(exporter.poll().inventory.containers) != {"101", "102"}:
        assert time.monotonic() < deadline
        time.sleep(0.01)


# --- configurations that check-config accepted and serve could not run -----------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("state: {poll_interval: .inf}\n", "state.poll_interval: inf is not a duration"),
        ("state: {poll_interval: .nan}\n", "state.poll_interval: nan is not a duration"),
        ("state: {poll_interval: 1e10}\n", "state.poll_interval: '1e10' is not a duration"),
        ("state: {poll_interval: 1.0e+10}\n", "state.poll_interval: 10000000000.0 has no unit"),
        ("state: {poll_interval: 2h}\n", "state.poll_interval: '2h' is not between 1s and 1h"),
        (
            "state: {poll_interval: 99999999999d}\n",
            "state.poll_interval: '99999999999d' is longer than ten years",
        ),
        ("state: {poll_interval: 1ms}\n", "state.poll_interval: '1ms' is not between 1s and 1h"),
        ("state: {poll_interval: 10m, retention: 5m}\n", "state.retention: '5m' is not between 10m and"),
        (f"state: {{retention: {'9' * 400}}}\n", "state.retention: 999"),
        (f"state: {{retention: {'9' * 400}d}}\n", "state.retention: '999"),
        ("quotas: {default: {total: " + "9" * 400 + "}}\n", "quotas.default.total: 999"),
        ("quotas: {default: {total: 1.0e+400}}\n", "quotas.default.total: inf is not a size"),
        ('state: {file: "/var/lib/x\\0y"}\n', "state.file: '/var/lib/x\\x00y' is not valid Unicode text"),
        (
            "containers: {static: [{veid: '1', ips: ['fe80::1%eth0']}]}\n",
            "containers.static[0].ips[0]: 'fe80::1%eth0' has a scope",
        ),
        ("a: &a [*a]\n", "recursive document"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML"),
        ("webconfig: 1\n\xff\n", "not UTF-8 text"),
    ],
)
def test_configurations_that_could_not_run_are_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))
    assert cli.main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.startswith(f"{path}: ")
    assert "Traceback" not in err


def test_an_alias_bomb_is_refused_at_once_in_little_memory(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
    )
    path = tmp_path / "config.yaml"
    path.write_text(bomb)
    start = time.monotonic()
    with pytest.raises(ConfigError, match="aliases expand the document by"):
        load(str(path))
    assert time.monotonic() - start < 2


def test_netfilter_backend_off_unquoted_is_the_documented_word(write_config) -> None:  # type: ignore[no-untyped-def]
    assert load(write_config("netfilter:\n  backend: off\n")).netfilter.backend == "off"
