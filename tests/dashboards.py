"""The shipped Grafana dashboards and the PromQL in them, for the tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parents[1] / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))

# Grafana's own variables, as a query sees them once Grafana has filled them in.
BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.S)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["templating"]["list"])


def substitute(expr: str, values: dict[str, str]) -> str:
    """expr with $name and ${name} replaced (longest names first, so $__range_s is not $__range)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def queries(dashboard: dict[str, Any], values: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, label the result must carry or "") of every panel target and query variable.

    A variable's label_values(selector, label) is the selector, whose series must carry the label.
    """
    values = {**BUILTINS, **values}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", substitute(target["expr"], values), ""
    for var in variables(dashboard):
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query.strip())
        assert m, f"variable {var['name']}: only label_values(selector, label) is used here"
        yield f"variable {var['name']}", substitute(m.group(1), values), m.group(2)
