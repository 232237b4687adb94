from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from vz_traffic_exporter import cli, config
from vz_traffic_exporter.config import ConfigError, QuotaConfig, load, parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[2]


def problems(write_config, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        load(write_config(text))
    return err.value.problems


def test_example_config_is_valid() -> None:
    cfg = load(str(ROOT / "config.example.yaml"))
    assert [c.veid for c in cfg.static] == ["101", "102"]
    assert cfg.static[0].ips == ("192.0.2.11", "2001:db8::11")
    assert cfg.classes.ids() == (0, 1)
    assert cfg.quotas.containers["101"].out == 500 * 10**9


def test_no_file_means_built_in_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.yaml"))
    cfg = load(None)
    assert cfg.static == () and cfg.netfilter.backend == "auto"
    assert cfg.classes.ids() == (0,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "containers:\n  static:\n    - {veid: '101', ips: [192.0.2.11]}\n"
            "    - {veid: '102', ips: ['192.0.2.300']}\n",
            ["containers.static[1].ips[0]: '192.0.2.300' is not an IP address"],
        ),
        (
            "containers: {static: [{veid: '101'}, {veid: '101'}]}\n",
            ["containers.static[1].veid: duplicate veid '101' (also containers.static[0])"],
        ),
        (
            "containers: {static: [{veid: '1', ips: [192.0.2.1]}, {veid: '2', ips: [192.0.2.1]}]}\n",
            ["containers.static[1].ips[0]: 192.0.2.1 is already claimed by containers.static[0] (veid 1)"],
        ),
        (
            "containers: {static: [{veid: '1', ips: ['2001:DB8:0::1', '2001:db8::1']}]}\n",
            ["containers.static[0].ips[1]: 2001:db8::1 is already claimed by containers.static[0] (veid 1)"],
        ),
        ("containers: {static: [{name: x}]}\n", ["containers.static[0]: veid is required"]),
        (
            "colour: blue\n",
            [
                "colour: unknown key (expected one of: containers, network_classes, "
                "networks_classes_file, netfilter, kernel, state, quotas)"
            ],
        ),
        (
            "netfilter: {backend: nft}\n",
            ["netfilter.backend: 'nft' is not one of: auto, iptables, ipset, nftables, off"],
        ),
        ("netfilter: {host_traffic: 'yes'}\n", ["netfilter.host_traffic: must be true or false, not 'yes'"]),
        (
            "netfilter: {backend: nftables, manage_rules: false}\n",
            [
                "netfilter.manage_rules: false adopts the operator's own iptables rules; backend 'nftables' "
                "has none to adopt (use backend iptables or auto)"
            ],
        ),
        (
            "network_classes: [{id: 16, networks: [198.51.100.0/24]}]\n",
            ["network_classes[0].id: must be a class number 0..15, not 16"],
        ),
        (
            "network_classes: [{id: 1, networks: [198.51.100.0/33]}]\n",
            ["network_classes[0].networks[0]: '198.51.100.0/33' is not a network (address/prefix)"],
        ),
        (
            "network_classes: [{id: 1, networks: [198.51.100.0/24]}, {id: 2, networks: [198.51.100.0/24]}]\n",
            ["network_classes: 198.51.100.0/24 is listed in both class 1 and class 2"],
        ),
        ("network_classes: [{id: 1}, {id: 1}]\n", ["network_classes[1].id: class 1 is defined twice"]),
        (
            "state: {poll_interval: soon}\n",
            ["state.poll_interval: 'soon' is not a duration (use 30s, 5m, 1h, 35d)"],
        ),
        ("kernel: {venetstat: maybe}\n", ["kernel.venetstat: must be auto, true or false, not 'maybe'"]),
        (
            "quotas: {default: {total: 1XB}}\n",
            ["quotas.default.total: '1XB' is not a size (use bytes, 500GB or 2TiB)"],
        ),
        ("quotas: {classes: [3]}\n", ["quotas.classes[0]: class 3 is not defined in network_classes"]),
        ("containers: [1, 2]\n", ["containers: must be a mapping, not a list"]),
    ],
)
def test_every_problem_is_named_by_its_key(write_config, text: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert problems(write_config, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "state:\n  retention: " + "9" * 5000 + "\n",
            "state.retention: an integer of 5000 characters: no setting takes one (line 2)",
        ),
        (
            "quotas: {containers: {'101': {out: " + "5" * 4001 + "}}}\n",
            "quotas.containers.101.out: an integer of 4001 characters: no setting takes one (line 1)",
        ),
        ("[" * 999 + "]" * 999 + "\n", "[0]" * 64 + ": collections nested more than 64 deep (line 1)"),
        (
            "state: " + "{a: " * 900 + "}" * 900 + "\n",
            "state" + ".a" * 63 + ": collections nested more than 64 deep (line 1)",
        ),
        (  # an anchor: the node reader
            "x: &x 1\nstate: " + "[" * 999 + "]" * 999 + "\n",
            "line 2, column 71: collections nested more than 64 deep",
        ),
    ],
)
def test_huge_integers_and_deep_nesting_are_refused_with_their_key(
    write_config, text: str, expected: str
) -> None:  # type: ignore[no-untyped-def]
    assert problems(write_config, text) == [expected]


def test_all_problems_are_reported_together(write_config) -> None:  # type: ignore[no-untyped-def]
    found = problems(write_config, "netfilter: {backend: x, manage_rules: 1}\nstate: {retention: 0}\n")
    assert len(found) == 3


def test_yaml_syntax_error_names_the_line(write_config) -> None:  # type: ignore[no-untyped-def]
    found = problems(write_config, "containers:\n  static: [\n")
    assert found[0].startswith("line 3, column 1: invalid YAML")


def test_network_host_bits_are_masked(write_config) -> None:  # type: ignore[no-untyped-def]
    cfg = load(write_config("network_classes: [{id: 1, networks: [198.51.100.7/24]}]\n"))
    assert str(cfg.classes.classes[1].networks[0]) == "198.51.100.0/24"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("35d", 35 * 86400), ("1.5s", 1.5), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("500GB", 500 * 10**9), ("2TiB", 2 * 2**40), ("1TB", 10**12), (1234, 1234), ("10 MiB", 10 * 2**20)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_a_containers_quota_is_its_own_entry_key_by_key_over_the_default() -> None:
    quotas = load(str(FIXTURES / "lab.yaml")).quotas
    assert quotas.of("101") == {"out": 500 * 10**9, "total": 2 * 2**40}
    assert quotas.of("102") == {"total": 10**12}
    assert quotas.of("105") == {"in": 15 * 10**11, "total": 10**12}
    assert quotas.counted_classes() == (1,)
    assert QuotaConfig().counted_classes({0, 1, 2}) == (0, 1, 2)  # unset: every class of the node counts
    assert QuotaConfig().of("101") == {}


def _nodes(text: str) -> object:
    loader = config._LOADER(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _same(a: object, b: object) -> bool:
    """Equal, of the same types all the way down (an integer written 0101 stays a WrittenInt)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(k, k2) and _same(a[k], b[k2]) for k, k2 in zip(a, b))  # type: ignore[attr-defined,index]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    if isinstance(a, config.WrittenInt):
        return a == b and a.text == b.text  # type: ignore[attr-defined]
    return bool(a == b) or (a != a and b != b)  # NaN


def test_the_event_reader_reads_what_the_node_reader_reads() -> None:
    import random

    import yaml

    documents = [
        (ROOT / "config.example.yaml").read_text(),
        "",
        "---\n",
        "a: 0101\nb: 0x1f\nc: 1_000\nd: +5\ne: 2026-11-30\nf: yes\ng: ~\nh: .nan\n"
        "i: !!str 12\nj: [1, [2, {k: v}]]\n",
        "- 1\n- {a: {b: [c, d]}}\n- !!binary aGk=\n- 1.5e3\n- '0101'\n",
        "? complex\n: value\n'quoted key': \"x\\ty\"\nempty:\nlist: []\nmap: {}\n",
    ]
    rng = random.Random(20261130)
    example = documents[0]
    alphabet = ":-[]{}#&*!|>'\"%@`,? \n\t0123456789abcxyz"
    for _ in range(400):
        chars = list(example)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(chars))
            chars[at : at + rng.randint(0, 3)] = rng.choice(alphabet) * rng.randint(1, 2)
        documents.append("".join(chars))
    read = fell_back = failed = 0
    for text in documents:
        try:
            mine: object = config._from_events(text)
        except config._Fallback:
            fell_back += 1
            continue
        except yaml.YAMLError:
            with pytest.raises(yaml.YAMLError):
                _nodes(text)
            failed += 1
            continue
        assert _same(mine, _nodes(text)), text
        read += 1
    assert read > 50 and failed > 50, (read, fell_back, failed)
    for text in ("a: &x 1\nb: *x\n", "<<: {a: 1}\n", "--- 1\n--- 2\n", "!!set {a, b}\n", "{[1]: 2}\n"):
        with pytest.raises(config._Fallback):
            config._from_events(text)


def test_a_config_with_anchors_still_loads_through_the_node_reader(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "state:\n  file: &f /tmp/x.json\ncontainers:\n  static:\n    - {veid: '101', ips: [192.0.2.11]}\n"
    )
    assert load(str(path)).state.file == "/tmp/x.json"


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


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = cli.main(["--config", str(path), "check-config"])
    return code, capsys.readouterr().err.replace(f"{path}: ", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("state: {retention: 35}\n", "state.retention: 35 has no unit: write 35s, 35m, 35h or 35d"),
        ("state: {retention: '35'}\n", "state.retention: '35' has no unit: write 35s, 35m, 35h or 35d"),
        ("state: {poll_interval: 1ms}\n", "state.poll_interval: '1ms' is not between 1s and 1h"),
        (
            "state: {poll_interval: 5m, retention: 1m}\n",
            "state.retention: '1m' is not between 5m and 3660d",
        ),
        (
            "network_classes: [{id: 1, networks: [203.0.113.5]}]\n",
            "network_classes[0].networks[0]: '203.0.113.5' has no prefix: "
            "write 203.0.113.5/32 for one address",
        ),
        (
            "containers: {static: [{veid: 0101, ips: [192.0.2.11]}]}\n",
            'containers.static[0].veid: 0101 is read by YAML as the number 65: quote it ("0101")',
        ),
        (
            "quotas: {containers: {0x65: {total: 1TB}}}\n",
            'quotas.containers.0x65: 0x65 is read by YAML as the number 101: quote it ("0x65")',
        ),
    ],
)
def test_units_ranges_and_quoting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    code, err = check(tmp_path, capsys, text)
    assert code == 2 and err.strip() == problem
