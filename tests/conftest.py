"""Shared test setup: tests never see a developer's MARKETPIPE_* variables, .env or stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPO_ROOT = Path(__file__).resolve().parent.parent

# `make test` (and so CI) is repeatable: hypothesis draws the same examples on every run, so a
# red build is never a dice roll. `make fuzz` explores: fresh random examples each run (1000 per
# test unless the test sets its own count).
# A failure found there becomes an @example on its test.
# No deadline: a loaded machine (CI shares its 2 cores) must not turn a pass into a fail.
hypothesis_settings.register_profile("repeatable", derandomize=True, print_blob=True, deadline=None)
hypothesis_settings.register_profile("explore", max_examples=1000, print_blob=True, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack",
        choices=["auto", "local", "docker"],
        default="local",
        help="services for integration tests: local processes (default), testcontainers with "
        "the real images (not yet proven: see docs/testing.md), or auto (docker when an engine "
        "answers)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    for name in [n for n in os.environ if n.upper().startswith("MARKETPIPE_")]:
        del os.environ[name]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (.env, .marketpipe/local) resolve inside the test's own folder."""
    monkeypatch.chdir(tmp_path)
