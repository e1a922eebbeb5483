"""`make help` read through a pipe or a log: plain text, with the variables' real values."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO_ROOT


def test_make_help_is_plain_and_shows_real_values() -> None:
    out = subprocess.run(
        ["make", "-s", "help", "RELEASE=mine", "VALUES=my-values.yaml"], cwd=REPO_ROOT,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "\033" not in out  # no colour codes when stdout is not a terminal
    assert "$(" not in out
    assert "with my-values.yaml" in out
    assert "  demo " in out
    assert "  test " in out
