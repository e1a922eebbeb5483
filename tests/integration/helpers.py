"""Helpers for integration tests that drive the real CLI against the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from marketpipe.settings import Settings, flatten_env


def service_env(settings: Settings) -> dict[str, str]:
    """The process environment that points a `marketpipe` subprocess at ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MARKETPIPE_")}
    env.update({k: v for k, v in flatten_env(settings, reveal_secrets=True).items() if v})
    return env


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
