"""Hostile inputs, made from real ones with a fixed seed, against every parser and reader.

Run ``python -m tests.fuzz --seed 1 --cases 100`` (``make fuzz`` runs a larger
set and writes ``docs/fuzz.md``).  Each category starts from real inputs
(the project's fixtures and, where they are beside the project, the shared
real samples) and mutates them: bytes flipped, lines repeated, cut or
dropped, numbers made huge or negative, values swapped for hostile ones
(NUL, lone surrogates, invalid UTF-8, scoped addresses, ``.inf``, ``.nan``),
deep nesting and alias bombs.  A case passes when the code under test answers
with its own clear error or with a result:

- configurations and web configurations: exit 0 or 2 from ``check-config``,
  every problem line naming the file; an accepted configuration also builds
  an exporter that reads once;
- state files: loaded, or put aside, never an exception;
- kernel files and command outputs: one read of an exporter whose sources
  read them, then its exposition: a failing source is ``up 0``, nothing else.

A case fails on any exception that escapes, any error logged with a
traceback (a source that failed *unexpectedly*), or running past
``CASE_SECONDS`` (a hang).  The run reports cases and failures per category
and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.conftest import FIXTURES, ReplayRunner
from vz_traffic_exporter import cli
from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.config import load
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.exposition import collector, webconfig
from vz_traffic_exporter.state import StateFile

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real-samples"
CASE_SECONDS = 10

HOSTILE_TEXT = [
    "",
    "\0",
    "\x00\x01\x02",
    "\ud800",
    "\udcff",
    "9" * 400,
    str(2**64),
    str(2**64 - 1),
    "-1",
    "-0",
    "1e10",
    "1e309",
    ".inf",
    "-.inf",
    ".nan",
    "0x10",
    "0101",
    "off",
    "no",
    "fe80::1%eth0",
    "2001:db8::1%eth0",
    "192.0.2.1/33",
    "203.0.113.0/240",
    "203.0.113.5",
    "~",
    "null",
    "-",
    "[]",
    "{}",
    "\n",
    '"',
    "\\",
    "\u00e9" * 300,
    "x" * 5000,
    "1ms",
    "0s",
    "35",
    "99999999999999999999d",
]
HOSTILE_VALUES: list[Any] = [
    *HOSTILE_TEXT,
    None,
    True,
    False,
    0,
    -1,
    2**64,
    10**400,
    1.5,
    float("inf"),
    float("nan"),
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": None}}},
    ["x"] * 50,
]
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)


# --- mutations -------------------------------------------------------------------------------------------


def mutate_text(rng: random.Random, text: str) -> str:
    """One to three random edits of a text."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(_TEXT_EDITS)(rng, text)
    return text


def _flip(rng: random.Random, text: str) -> str:
    if not text:
        return chr(rng.randint(0, 0x2FF))
    i = rng.randrange(len(text))
    return (
        text[:i]
        + chr(rng.choice([0, 9, 10, 13, 32, 34, 35, 37, 38, 42, 45, 47, 58, 91, 123, 0xD800, 0xFFFD]))
        + text[i + 1 :]
    )


def _insert(rng: random.Random, text: str) -> str:
    i = rng.randint(0, len(text))
    return text[:i] + rng.choice(HOSTILE_TEXT) + text[i:]


def _number(rng: random.Random, text: str) -> str:
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    if not digits:
        return _insert(rng, text)
    i = rng.choice(digits)
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    return (
        text[:i]
        + rng.choice(["9" * 400, str(2**64), "-5", "1e10", "0", str(2**31 - 1), str(2**32 + 7)])
        + text[j:]
    )


def _lines(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    if not lines:
        return _insert(rng, text)
    i = rng.randrange(len(lines))
    action = rng.randrange(4)
    if action == 0:
        lines.insert(i, lines[i])  # a repeated line
    elif action == 1:
        del lines[i]
    elif action == 2:
        lines[i] = lines[i][: rng.randint(0, len(lines[i]))]  # a cut line
    else:
        lines.insert(i, lines[rng.randrange(len(lines))].replace("1", "2", 1))  # a near twin
    return "".join(lines)


def _truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randint(0, len(text))]


_TEXT_EDITS: list[Callable[[random.Random, str], str]] = [_flip, _insert, _number, _lines, _truncate]


def mutate_tree(rng: random.Random, data: Any) -> Any:
    """A copy of parsed YAML or JSON with one value, key or list swapped for a hostile one."""
    data = json.loads(json.dumps(data, default=str))
    paths = list(_paths(data))
    if not paths:
        return rng.choice(HOSTILE_VALUES)
    parent, key = rng.choice(paths)
    choice = rng.randrange(5)
    if choice == 0 and isinstance(parent, dict):
        parent[rng.choice(HOSTILE_TEXT) or "k"] = parent.pop(key)
    elif choice == 1 and isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key] * rng.choice([2, 3])  # repeated entries
    else:
        parent[key] = rng.choice(HOSTILE_VALUES)
    return data


def _paths(data: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield data, key
            yield from _paths(value)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield data, i
            yield from _paths(value)


def to_bytes(rng: random.Random, text: str) -> bytes:
    """Text as a file holds it; sometimes with bytes that are not UTF-8."""
    try:
        data = text.encode("utf-8", "surrogateescape")  # the bytes a surrogate escape stands for
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate, as bytes no UTF-8 decoder takes
    if rng.random() < 0.1:
        i = rng.randint(0, len(data))
        data = data[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + data[i:]
    return data


def dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, allow_unicode=True)


# --- cases -----------------------------------------------------------------------------------------------


class Unexpected(Exception):
    """What a case must never show: an escaped exception, a traceback in the log, a hang."""


class _Traces(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            where = traceback.extract_tb(err.__traceback__)[-1]
            self.found.append(
                f"{record.getMessage()}: {type(err).__name__}: {err} ({where.filename}:{where.lineno})"
            )


@contextlib.contextmanager
def guarded() -> Iterator[_Traces]:
    traces = _Traces()
    root = logging.getLogger()
    root.addHandler(traces)

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {CASE_SECONDS}s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(CASE_SECONDS)
    try:
        yield traces
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        root.removeHandler(traces)
    if traces.found:
        raise Unexpected("traceback logged: " + traces.found[0])


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape")


def real(relative: str) -> list[str]:
    path = REAL / relative
    return [read(p) for p in sorted(path.glob("*.txt"))] if path.is_dir() else []


def check_config(workdir: Path, rng: random.Random) -> None:
    seeds = [read(ROOT / "config.example.yaml"), read(FIXTURES / "lab.yaml"), read(FIXTURES / "kernel.yaml")]
    kind = rng.randrange(6)
    if kind == 0:
        text = mutate_text(rng, rng.choice(seeds))
    elif kind == 1:
        depth = rng.choice([40, 900, 999, 5000])
        where = rng.choice(["a: ", "", "state: ", "quotas:\n  default: ", "a: &x 1\nstate: "])
        shapes = [
            ALIAS_BOMB,
            where + "[" * depth + "]" * depth,  # deep nesting where a mapping is expected
            where + "{a: " * min(depth, 999) + "}" * min(depth, 999),
            # integers past any setting, and past what Python reads
            f"state:\n  retention: {'9' * rng.choice([19, 400, 4001, 4300, 5000])}\n",
            f"quotas:\n  default: {{total: {'7' * rng.choice([30, 5000])}}}\n",
        ]
        text = rng.choice(shapes)
    elif kind == 2:  # a classes file of its own, mutated
        classes = workdir / "networks_classes"
        base = rng.choice(
            [*real("networks_classes"), "1 198.51.100.0/24\n0 198.51.100.128/25\n2 2001:db8::/32\n"]
        )
        classes.write_bytes(to_bytes(rng, mutate_text(rng, base)))
        text = f"networks_classes_file: {classes}\nnetfilter: {{backend: 'off'}}\n"
    else:
        import yaml

        text = dump_yaml(mutate_tree(rng, yaml.safe_load(rng.choice(seeds))))
    path = workdir / "config.yaml"
    path.write_bytes(to_bytes(rng, text))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--config", str(path), "check-config"], runner=ReplayRunner({}))
    if code not in (0, 2):
        raise Unexpected(f"check-config exited {code}")
    if code == 2:
        for line in err.getvalue().splitlines():
            if not line.startswith(f"{path}: "):
                raise Unexpected(f"a problem that does not name the file: {line[:200]!r}")
        return
    config = load(str(path))  # accepted: it must also run
    if not 1 <= config.state.poll_interval <= 3600:
        raise Unexpected(f"accepted poll_interval {config.state.poll_interval}")
    empty = str(FIXTURES / "empty")
    Exporter(config, ReplayRunner({}, installed=()), procfs=empty, sysfs=empty).poll()


def check_web_config(workdir: Path, rng: random.Random) -> None:
    seed = {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "TLS12"},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}, "http2": True},
        "basic_auth_users": {"prometheus": "$2y$10$" + "a" * 53},
    }
    if rng.random() < 0.3:
        seed.pop("tls_server_config")
    text = dump_yaml(mutate_tree(rng, seed)) if rng.random() < 0.7 else mutate_text(rng, dump_yaml(seed))
    path = workdir / "web.yaml"
    path.write_bytes(to_bytes(rng, text))
    with contextlib.suppress(webconfig.WebConfigError):
        webconfig.load(str(path))


def _state_seed() -> dict[str, Any]:
    acc = Accumulator("3c1f2e0a-0000-4000-8000-000000000001")
    seen = [
        Observation(
            ("managed", "out", 0, "192.0.2.11"), ("ip", "101", "192.0.2.11", "0", "out"), 3, 1500, epoch=9
        ),
        Observation(
            ("nft_counters", "ve_101", "counter_i4_1"),
            ("container", "nft_counters", "101", "1", "in", "ipv4"),
            4,
            400,
        ),
        Observation(("interfaces", "veth101.0", 7, "out"), ("interface", "101", "veth101.0", "out"), 5, 500),
    ]
    acc.update("iptables", seen)
    acc.update("iptables", seen[:2])  # the last one missing: a "missing" row, beside "created"
    return acc.to_state()


def check_state(workdir: Path, rng: random.Random) -> None:
    seed = _state_seed()
    text = json.dumps(mutate_tree(rng, seed)) if rng.random() < 0.6 else mutate_text(rng, json.dumps(seed))
    if rng.random() < 0.05:
        text = "[" * 100_000 + "]" * 100_000
    path = workdir / "state.json"
    path.write_bytes(to_bytes(rng, text))
    acc = StateFile(str(path)).load()
    if acc is not None:
        for kind in ("ip", "container", "interface"):
            acc.rows(kind)
        json.dumps(acc.to_state())


def _render(exporter: Exporter) -> None:
    collector.render(exporter.poll())


def check_kernel_file(workdir: Path, rng: random.Random) -> None:
    procfs, sysfs = workdir / "proc", workdir / "sys"
    (procfs / "vz").mkdir(parents=True, exist_ok=True)
    (procfs / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    for name in ("veinfo", "venetstat", "venetstat_v6"):
        text = read(FIXTURES / "proc" / "vz" / name)
        if name == "veinfo" and real("veinfo") and rng.random() < 0.5:
            text = rng.choice(real("veinfo"))
        (procfs / "vz" / name).write_bytes(
            to_bytes(rng, mutate_text(rng, text) if rng.random() < 0.6 else text)
        )
    (procfs / "sys" / "kernel" / "random" / "boot_id").write_bytes(
        to_bytes(rng, mutate_text(rng, "0f0e-boot\n"))
    )
    net = sysfs / "class" / "net" / "veth101.0"
    (net / "statistics").mkdir(parents=True, exist_ok=True)
    (net / "ifindex").write_bytes(to_bytes(rng, mutate_text(rng, "7\n") if rng.random() < 0.3 else "7\n"))
    for stat in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets"):
        value = mutate_text(rng, "1400\n") if rng.random() < 0.3 else "1400\n"
        (net / "statistics" / stat).write_bytes(to_bytes(rng, value))
    config = workdir / "kernel.yaml"
    config.write_text(
        "containers: {discovery: [static, veinfo]}\nnetfilter: {backend: 'off'}\n"
        "kernel: {venetstat: true, vznetstat: false, nft_counters: false, interfaces: true}\n"
    )
    _render(Exporter(load(str(config)), ReplayRunner({}, installed=()), procfs=str(procfs), sysfs=str(sysfs)))


COMMANDS: dict[tuple[str, ...], tuple[str, list[str]]] = {
    # argv: (fixture, real sample folders)
    ("vzlist", "-a", "-j", "-o", "ctid,name,ip"): ("cmd/vzlist-a-j-vz7.json", ["vzlist-json"]),
    ("prlctl", "list", "-a", "-j", "-o", "uuid,envid,name,type,ip"): ("cmd/prlctl-list-a-j.json", []),
    ("vznetstat", "-4", "-a"): ("cmd/vznetstat-4-a.txt", ["vznetstat"]),
    ("vznetstat", "-6", "-a"): ("cmd/vznetstat-6-a.txt", []),
    ("nft", "-j", "list", "ruleset", "netdev"): ("cmd/nft-j-list-ruleset-netdev.json", ["nft-counters-json"]),
    ("iptables-save", "-c", "-t", "filter"): ("cmd/iptables-save-c-adopted.txt", ["iptables-save"]),
    ("ip6tables-save", "-c", "-t", "filter"): ("cmd/ip6tables-save-c-adopted.txt", []),
}
BACKEND_COMMANDS: dict[str, dict[tuple[str, ...], str]] = {
    "iptables": {
        ("iptables-save", "-c", "-t", "filter"): "cmd/iptables-save-c.txt",
        ("ip6tables-save", "-c", "-t", "filter"): "cmd/ip6tables-save-c.txt",
    },
    "ipset": {
        ("ipset", "save"): "cmd/ipset-save.txt",
        ("iptables-save", "-t", "filter"): "cmd/iptables-save-c.txt",
        ("ip6tables-save", "-t", "filter"): "cmd/ip6tables-save-c.txt",
    },
    "nftables": {
        ("nft", "-j", "list", "table", "inet", "vz_traffic"): "cmd/nft-j-list-table-vz_traffic.json"
    },
}


def check_command_output(workdir: Path, rng: random.Random) -> None:
    outputs: dict[tuple[str, ...], Any] = {("iptables", "--version"): "iptables v1.8.9 (nf_tables)\n"}
    backend = rng.choice(["adopted", "iptables", "ipset", "nftables"])
    table = {argv: fixture for argv, (fixture, _) in COMMANDS.items()}
    if backend != "adopted":
        table.update(BACKEND_COMMANDS[backend])
    for argv, fixture in table.items():
        text = read(FIXTURES / fixture)
        folders = COMMANDS.get(argv, ("", []))[1]
        samples = [s for folder in folders for s in real(folder)]
        if samples and rng.random() < 0.3:
            text = rng.choice(samples)
        if rng.random() < 0.5:
            if text.lstrip().startswith(("[", "{")) and rng.random() < 0.6:
                with contextlib.suppress(ValueError):
                    text = json.dumps(mutate_tree(rng, json.loads(text)))
            else:
                text = mutate_text(rng, text)
        outputs[argv] = to_bytes(rng, text).decode("utf-8", "replace")  # as the runner decodes
    manage = backend != "adopted"
    config = workdir / "commands.yaml"
    config.write_text(
        "containers:\n  discovery: [static, vzlist, prlctl]\n"
        "  static: [{veid: '101', ips: [192.0.2.11, '2001:db8::b']}]\n"
        f"netfilter: {{backend: {'iptables' if backend == 'adopted' else backend}, "
        f"manage_rules: {str(manage).lower()}}}\n"
        "kernel: {venetstat: false, vznetstat: true, nft_counters: true, interfaces: false}\n"
    )
    installed = ("vzlist", "prlctl", "vznetstat", "nft", "iptables", "ip6tables", "ipset")
    runner = ReplayRunner(outputs, installed=installed)
    empty = str(FIXTURES / "empty")
    exporter = Exporter(load(str(config)), runner, procfs=empty, sysfs=empty)
    _render(exporter)
    _render(exporter)  # a second read of the same output: the paths that reuse what was parsed


CATEGORIES: dict[str, Callable[[Path, random.Random], None]] = {
    "config": check_config,
    "web-config": check_web_config,
    "state": check_state,
    "kernel-file": check_kernel_file,
    "command-output": check_command_output,
}


@dataclass
class Result:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    hangs: int = 0
    seconds: float = 0.0


def run(seed: int, cases: int, name: str) -> Result:
    logging.disable(logging.WARNING)  # the expected errors; tracebacks are caught by guarded()
    result = Result()
    start = time.monotonic()
    for case in range(cases):
        rng = random.Random(f"{seed}-{name}-{case}")
        with tempfile.TemporaryDirectory(prefix="vzt-fuzz-") as tmp:
            try:
                with guarded():
                    CATEGORIES[name](Path(tmp), rng)
            except TimeoutError:
                result.hangs += 1
                result.failures.append(f"case {case}: hang")
            except Exception as err:  # what the case is there to find
                where = traceback.extract_tb(err.__traceback__)[-1]
                result.failures.append(
                    f"case {case}: {type(err).__name__}: {str(err)[:300]} ({where.filename}:{where.lineno})"
                )
        result.cases += 1
    result.seconds = time.monotonic() - start
    return result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=100, help="cases per category")
    parser.add_argument("--category", action="append", choices=list(CATEGORIES))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(1000)
    names = args.category or list(CATEGORIES)
    if len(names) > 1:  # one process per category: each one's peak memory is its own
        categories = {}
        for name in names:
            child = subprocess.run(
                [sys.executable, "-m", "tests.fuzz", "--seed", str(args.seed), "--cases", str(args.cases),
                 "--category", name, "--json"],
                capture_output=True, text=True, check=False, cwd=ROOT,
            )  # fmt: skip
            categories.update(json.loads(child.stdout)["categories"])
    else:
        [name] = names
        result = run(args.seed, args.cases, name)
        categories = {
            name: {
                "cases": result.cases,
                "failures": len(result.failures),
                "hangs": result.hangs,
                "seconds": round(result.seconds, 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "examples": result.failures[:5],
            }
        }
    summary = {
        "seed": args.seed,
        "peak_rss_mib": max(c["peak_rss_mib"] for c in categories.values()),
        "categories": categories,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for name, r in categories.items():
            print(
                f"{name:15} {r['cases']:6} cases {r['failures']:4} failures "
                f"{r['hangs']:3} hangs {r['seconds']:7.1f}s  peak RSS {r['peak_rss_mib']} MiB"
            )
            for example in r["examples"]:
                print(f"    {example}")
        print(f"peak RSS {summary['peak_rss_mib']} MiB")
    return 1 if any(c["failures"] for c in categories.values()) else 0


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    sys.exit(main())
