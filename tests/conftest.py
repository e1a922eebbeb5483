"""Shared test setup: tests never see a developer's MARKETPIPE_* variables, .env or stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack",
        choices=["auto", "local", "docker"],
        default="auto",
        help="services for integration tests: local processes, testcontainers with the real "
        "images, or auto (docker when an engine answers, else local)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    for name in [n for n in os.environ if n.upper().startswith("MARKETPIPE_")]:
        del os.environ[name]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (.env, .marketpipe/local) resolve inside the test's own folder."""
    monkeypatch.chdir(tmp_path)
