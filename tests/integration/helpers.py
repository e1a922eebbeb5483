"""Helpers for integration tests that drive the real CLI against the real services."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from benchmarks.pipeline.env import service_env
from marketpipe.settings import KafkaSettings, Settings

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


def fresh_topic_names(kafka: KafkaSettings, partitions: int) -> KafkaSettings:
    """``kafka`` with pipeline topic names of its own (not created yet)."""
    suffix = uuid.uuid4().hex[:10]
    return kafka.model_copy(
        update={
            "topic_raw": f"raw-{suffix}",
            "topic_valid": f"valid-{suffix}",
            "topic_dlq": f"dlq-{suffix}",
            "topic_quality_state": f"state-{suffix}",
            "partitions": partitions,
        }
    )
