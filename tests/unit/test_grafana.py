"""The shipped Grafana dashboards: well-formed, portable, and every query valid PromQL."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards import DASHBOARDS, GRAFANA, load, panels, queries, variables

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana unit ids used by exporter dashboards (volumes, rates, ratios, times, states).
UNITS = {
    "bytes",
    "decbytes",
    "bps",
    "Bps",
    "binBps",
    "pps",
    "percentunit",
    "s",
    "ops",
    "bool_on_off",
    "short",
}
ALL = {"job": ".*", "instance": ".*", "veid": ".*", "class": ".*"}


@pytest.fixture(params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_there_are_dashboards_and_a_provisioning_example() -> None:
    assert DASHBOARDS
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    assert yaml.safe_load((GRAFANA / "provisioning" / "datasources.yaml").read_text())["datasources"]


def test_the_data_source_is_a_variable_never_an_input(dashboard: dict[str, Any]) -> None:
    assert "__inputs" not in dashboard
    first = variables(dashboard)[0]
    assert (first["name"], first["type"], first["query"]) == ("datasource", "datasource", "prometheus")
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for var in variables(dashboard)[1:]:
        assert var["datasource"] == DATASOURCE, var["name"]


def test_layout_ids_titles_and_units(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [inner["id"] for p in dashboard["panels"] for inner in p.get("panels", [])]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in panels(dashboard):
        assert panel["title"] and panel.get("description"), panel["id"]
        assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, panel["title"]
        assert panel["targets"], panel["title"]


def test_rates_use_the_rate_interval_and_every_variable_is_declared(dashboard: dict[str, Any]) -> None:
    declared = {v["name"] for v in variables(dashboard)} | {"__rate_interval", "__range"}
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for window in re.findall(r"\b(?:rate|increase)\([^[]*\[([^\]]+)\]", expr):
                assert window in ("$__rate_interval", "$__range"), (panel["title"], window)
            assert set(re.findall(r"\$\{?(\w+)", expr)) <= declared, panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    found = list(queries(dashboard, ALL))
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}:expr", "expr": expr}
                    for i, (_, expr, _) in enumerate(found)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(found)} rules found" in proc.stdout
