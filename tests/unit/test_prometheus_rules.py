"""The shipped Prometheus rules: valid for promtool, and their unit tests pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

RULES_DIR = Path(__file__).resolve().parents[2] / "prometheus"
RULE_FILES = sorted(p for p in RULES_DIR.glob("*.rules.yml") if not p.name.endswith(".test.yml"))
TEST_FILES = sorted(RULES_DIR.glob("*.rules.test.yml"))

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=RULES_DIR, capture_output=True, text=True, check=False)


def test_every_rule_file_has_unit_tests_beside_it() -> None:
    assert RULE_FILES
    for rules in RULE_FILES:
        stem = rules.name[: -len(".rules.yml")]
        tests = [t for t in TEST_FILES if t.name.startswith(f"{stem}.") and rules.name in t.read_text()]
        assert tests, f"no promtool test file loads {rules.name}"


@needs_promtool
@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_promtool_checks_the_rules(rules: Path) -> None:
    proc = promtool("check", "rules", rules.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
@pytest.mark.parametrize("tests", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(tests: Path) -> None:
    proc = promtool("test", "rules", tests.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alerts_carry_veid_and_direction_or_say_where() -> None:
    alerts = {
        rule["alert"]: rule
        for rules in RULE_FILES
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert {"VzTrafficQuotaExceeded", "VzTrafficQuotaForecast"} <= set(alerts)
    for name, rule in alerts.items():
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
    for name in ("VzTrafficQuotaExceeded", "VzTrafficQuotaForecast"):
        assert "on (veid, direction)" in alerts[name]["expr"]


def test_no_container_numbers_in_the_rules() -> None:
    for rules in RULE_FILES:
        text = rules.read_text()
        assert not re.search(r'veid\s*=~?\s*"[^"]', text), rules.name
        assert not re.search(r"\b\d{6,}\b", text), rules.name  # no quota sizes either
