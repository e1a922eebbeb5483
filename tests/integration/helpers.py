"""Helpers for integration tests that drive the real CLI against the real services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.pipeline.env import service_env
from marketpipe.settings import Settings

__all__ = ["run_cli", "service_env"]


def run_cli(
    settings: Settings, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketpipe", *args],
        env=service_env(settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
