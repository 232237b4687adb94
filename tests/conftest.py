"""Shared test helpers: a runner that replays captured command output."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from vz_traffic_exporter.runner import CommandError, CommandNotFound

FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = ["tests.golden"]  # --update-golden


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: run in parallel (make test), the long ones start while the short ones fill in."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text()


class ReplayRunner:
    """Answers each argv from a table of captured outputs (or errors); records calls."""

    def __init__(
        self,
        outputs: dict[tuple[str, ...], Union[str, CommandError]],
        installed: Sequence[str] = ("iptables", "ip6tables"),
        netlink: Optional[Callable[[], Any]] = None,
    ) -> None:
        """netlink: what opens the netlink sockets (a scripted kernel's); None: the tools' text only."""
        self.outputs = outputs
        self.installed = set(installed)
        self._netlink = netlink
        self.calls: list[tuple[tuple[str, ...], Optional[str]]] = []
        self.timeouts: dict[tuple[str, ...], Optional[float]] = {}  # argv -> the timeout it was run with

    def run(
        self, argv: Sequence[str], *, stdin: Optional[str] = None, timeout: Optional[float] = None
    ) -> str:
        key = tuple(argv)
        self.timeouts[key] = timeout
        self.calls.append((key, stdin))
        if argv[0].split("-")[0] not in self.installed:
            raise CommandNotFound(argv)
        answer = self.outputs.get(key)
        if answer is None:
            raise CommandError(argv, 1, f"no recorded output for {' '.join(argv)}")
        if isinstance(answer, CommandError):
            raise answer
        return answer

    def which(self, program: str) -> Optional[str]:
        return f"/usr/sbin/{program}" if program in self.installed else None

    def netlink(self) -> Optional[Callable[[], Any]]:
        return self._netlink


NFT_VERSION = "iptables v1.8.9 (nf_tables)\n"


def managed_runner(**extra: Union[str, CommandError]) -> ReplayRunner:
    """A node with our rules installed and traffic counted (captured in a lab)."""
    outputs: dict[tuple[str, ...], Union[str, CommandError]] = {
        ("iptables", "--version"): NFT_VERSION,
        ("iptables-save", "-c", "-t", "filter"): fixture_text("cmd/iptables-save-c.txt"),
        ("ip6tables-save", "-c", "-t", "filter"): fixture_text("cmd/ip6tables-save-c.txt"),
        ("iptables-save", "-t", "filter"): fixture_text("cmd/iptables-save-c.txt"),
        ("ip6tables-save", "-t", "filter"): fixture_text("cmd/ip6tables-save-c.txt"),
    }
    return ReplayRunner(outputs)


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str) -> str:
        path = tmp_path / "config.yaml"
        path.write_text(text)
        return str(path)

    return write


def hostile_outcomes(
    cases: int, seed: int, good: Sequence[bytes], decode: Callable[[bytes], object], known: type[Exception]
) -> dict[str, int]:
    """Decode ``cases`` mutations of the good messages (bytes changed, cut, inserted, seeded): how many were
    read and how many raised ``known``; any other exception escapes."""
    rng = random.Random(seed)
    outcomes = {"read": 0, "unknown": 0}
    for _ in range(cases):
        body = bytearray(rng.choice(good))
        for _ in range(rng.randrange(1, 4)):
            if not body:
                break
            how = rng.random()
            if how < 0.6:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif how < 0.8:
                del body[rng.randrange(len(body)) :]
            else:
                at = rng.randrange(len(body))
                body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        try:
            decode(bytes(body))
            outcomes["read"] += 1
        except known:
            outcomes["unknown"] += 1
    return outcomes
