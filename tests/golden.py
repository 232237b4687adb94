"""Golden files: one per case under tests/golden/, compared with a readable diff, rewritten on request.

``pytest --update-golden`` (or ``UPDATE_GOLDEN=1``) writes what the code makes
now into the golden files instead of comparing; review the change with
``git diff tests/golden`` before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
SHOWN = 80  # lines of a diff in a failure message
_update = {"on": bool(os.environ.get("UPDATE_GOLDEN"))}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the code")


def pytest_configure(config: pytest.Config) -> None:
    _update["on"] = _update["on"] or bool(config.getoption("--update-golden", False))


def assert_golden(text: str, name: str) -> None:
    """text equals tests/golden/<name>, else fail with the unified diff (golden -> now)."""
    path = GOLDEN / name
    if _update["on"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(GOLDEN.parent.parent)}: run pytest --update-golden")
    expected = path.read_text()
    if text == expected:
        return
    diff = list(
        difflib.unified_diff(expected.splitlines(), text.splitlines(), f"golden/{name}", "now", lineterm="")
    )
    more = f"\n... {len(diff) - SHOWN} more lines" if len(diff) > SHOWN else ""
    pytest.fail(
        f"{name} differs from its golden file (pytest --update-golden rewrites it):\n"
        + "\n".join(diff[:SHOWN])
        + more,
        pytrace=False,
    )
