"""`make bench-e2e` cannot rot unnoticed: a tiny run of it (one rate, seconds of ticks, the
naive baseline beside it). No figure is asserted: at this size they mean nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.timeout(400)
def test_a_tiny_end_to_end_benchmark_writes_its_figures(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_e2e", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (result,) = tmp_path.glob("e2e-*.json")
    data = json.loads(result.read_text())
    (only,) = data["runs"].values()
    figures = only[0]
    assert figures["acknowledged"] > 0
    assert {"producer", "checker", "features", "archive"} <= set(figures["stages"])
    assert {"checker", "features", "producer"} <= set(figures["processes"])
    assert figures["naive"]["ticks"] > 0
    assert all(code == [0] for code in figures["exit_codes"].values()), figures["exit_codes"]
    assert "| offered ticks/s |" in run.stdout
    assert result.with_suffix(".png").stat().st_size > 0
