"""The README's metrics table and flags cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from vz_traffic_exporter import cli
from vz_traffic_exporter.config import KEYS, load
from vz_traffic_exporter.exposition.collector import METRICS
from vz_traffic_exporter.names import ALL_SOURCES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def table(heading: str) -> list[list[str]]:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_metrics_table_matches_the_collector() -> None:
    documented = {
        row[0].strip("`"): (row[1], re.findall(r"`(\w+)`", row[2]), row[3].rstrip("."))
        for row in table("Metrics")
    }
    in_code = {name: (kind, labels, doc.rstrip(".").lower()) for name, (kind, doc, labels) in METRICS.items()}
    assert {k: (v[0], v[1]) for k, v in documented.items()} == {k: (v[0], v[1]) for k, v in in_code.items()}
    for name, (_, _, doc) in documented.items():
        assert doc.lower() == in_code[name][2], name


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:6])
    assert "make demo" in head and "make test" in head


def test_every_flag_is_documented() -> None:
    flags = {
        opt
        for action in cli._parser()._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt not in ("--help", "--version")
    }
    documented = {flag for row in table("Running") for flag in re.findall(r"`(--[a-z.-]+)", row[0])}
    assert flags == documented


def test_every_source_the_code_can_report_is_in_the_sources_table() -> None:
    documented = {row[0].strip("`") for row in table("Sources")}
    assert documented == set(ALL_SOURCES)


def test_the_example_configuration_shows_every_key_and_only_real_ones() -> None:
    example = (ROOT / "config.example.yaml").read_text()
    shown = set(re.findall(r"([a-z_]+):", example))  # keys in block or flow style, commented out or not
    assert {key for keys in KEYS.values() for key in keys} - shown == set()
    # Only real ones: unknown keys are errors, so the example loads only if every key in it is real.
    assert load(str(ROOT / "config.example.yaml")).source.endswith("config.example.yaml")
