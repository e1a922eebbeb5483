"""Every benchmark script runs: a tiny ``--smoke`` run of each against the suite's services, so
`make bench` cannot rot unnoticed. No figure is checked: they mean nothing at this size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from marketpipe.settings import Settings
from tests.conftest import REPO_ROOT
from tests.integration.helpers import service_env

BENCHMARKS = REPO_ROOT / "benchmarks"
#: Modules of the ``benchmarks`` package run with ``python -m`` on a stack of their own, and
#: smoke-tested by their own tests (``test_soak_smoke.py``, ``test_bench_e2e_smoke.py``), not
#: as scripts here.
OWN_SMOKE = {"soak.py", "bench_e2e.py"}
#: Every script with a command line: a new benchmark is smoke-tested without being listed here.
SCRIPTS = sorted(
    p
    for p in BENCHMARKS.glob("*.py")
    if 'if __name__ == "__main__"' in p.read_text() and p.name not in OWN_SMOKE
)


def test_every_benchmark_is_found() -> None:
    assert {p.name for p in SCRIPTS} >= {"bench_sinks.py", "bench_latency.py", "naive.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_smoke_run(script: Path, services: Settings, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--running-services"],
        env=service_env(services),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def test_naive_baseline_api(services: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make bench-e2e` will call: every tick lands, and the result has its figures."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from naive import run_naive

    result = run_naive(services, 300, count=150)
    assert (result.ticks, result.rows, result.rate_offered) == (150, 150, 300)
    assert result.drained
    assert 0 <= result.latency_p50_s <= result.latency_p95_s <= result.latency_p99_s
    assert result.sustained_tps > 0
    assert set(result.processes) == {"producer", "consumer"}
    assert result.cpu_s > 0
    assert result.peak_rss_bytes > 0
