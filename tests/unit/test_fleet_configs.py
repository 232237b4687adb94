"""The shipped fleet configurations (prometheus/fleet/) are valid Prometheus configurations, and make-targets
writes what file_sd reads, or nothing and the line that is wrong."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "prometheus" / "fleet"
RULES = ROOT / "prometheus" / "vz_traffic.rules.yml"


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    return subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("name", ["central-push.yml", "central-pull.yml", "agent.yml"])
def test_a_shipped_fleet_configuration_passes_promtool(name: str, tmp_path: Path) -> None:
    text = (FLEET / name).read_text().replace("/etc/prometheus/vz_traffic.rules.yml", str(RULES))
    text = text.replace("NODE", "node-a").replace("CENTRAL", "http://[2001:db8:f:1::1]:9090/api/v1/write")
    path = tmp_path / name
    path.write_text(text)
    checked = promtool_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    data = yaml.safe_load(text)
    if name == "agent.yml":
        assert data["global"]["external_labels"] == {"node": "node-a"}
        assert data["scrape_configs"][0]["relabel_configs"] == [
            {"target_label": "instance", "replacement": "node-a"}
        ]
        assert "rule_files" not in data and "alerting" not in data  # an agent evaluates nothing
    else:
        assert data["rule_files"] == [str(RULES)]


def make_targets(listing: str, out: Path) -> subprocess.CompletedProcess[str]:
    source = out.parent / "nodes.txt"
    source.write_text(listing)
    return subprocess.run(
        [sys.executable, str(FLEET / "make-targets"), str(source), str(out)], capture_output=True, text=True
    )


def test_make_targets_writes_file_sd_targets_with_the_node_name(tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    done = make_targets("# the fleet\nnode-a node-a.example\n\nnode-b [2001:db8:f:2::2]:9100\n", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == [
        {"targets": ["node-a.example:10057"], "labels": {"node": "node-a"}},
        {"targets": ["[2001:db8:f:2::2]:9100"], "labels": {"node": "node-b"}},
    ]
    example = json.loads((FLEET / "targets.example.json").read_text())
    assert all(set(group) == {"targets", "labels"} and "node" in group["labels"] for group in example)


@pytest.mark.parametrize(
    ("listing", "why"),
    [
        ("node-a\n", "nodes.txt:1: expected 'name host[:port]'"),
        ("node-a a.example\nnode-a b.example\n", "nodes.txt:2: node 'node-a' is listed twice"),
        ("node-a 2001:db8::1\n", "nodes.txt:1: expected"),  # IPv6 without brackets
        ("node/a a.example\n", "nodes.txt:1: expected"),
    ],
)
def test_make_targets_refuses_a_bad_list_and_keeps_the_file_it_had(
    listing: str, why: str, tmp_path: Path
) -> None:
    out = tmp_path / "nodes.json"
    out.write_text("[]\n")
    done = make_targets(listing, out)
    assert done.returncode != 0 and why in done.stderr
    assert out.read_text() == "[]\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "nodes.json",
        "nodes.txt",
    ]
