"""The golden-file helper itself: a difference fails with its diff, the switch rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import golden


def test_a_difference_fails_with_a_readable_diff_and_the_switch_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(golden, "GOLDEN", tmp_path)
    (tmp_path / "case.prom").write_text('a{x="1"} 1\nb 2\n')
    golden.assert_golden('a{x="1"} 1\nb 2\n', "case.prom")  # equal: passes
    with pytest.raises(pytest.fail.Exception) as failed:
        golden.assert_golden('a{x="1"} 1\nb 3\n', "case.prom")
    assert "-b 2\n+b 3" in str(failed.value) and "--update-golden" in str(failed.value)
    monkeypatch.setitem(golden._update, "on", True)
    golden.assert_golden('a{x="1"} 1\nb 3\n', "case.prom")
    assert (tmp_path / "case.prom").read_text() == 'a{x="1"} 1\nb 3\n'
