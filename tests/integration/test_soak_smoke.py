"""`make soak` cannot rot unnoticed: a 20 s run of it with every stage (no figures asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.timeout(400)
def test_a_short_soak_writes_its_samples_and_plot(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--seconds", "20", "--every", "2",
         "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (result,) = tmp_path.glob("soak-*.json")
    data = json.loads(result.read_text())
    assert data["samples"]
    assert {"producer", "checker", "features"} <= {n for s in data["samples"] for n in s["rss_mb"]}
    assert result.with_suffix(".png").stat().st_size > 0
    assert "memory growth after" in run.stdout
