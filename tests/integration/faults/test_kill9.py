"""kill -9 of one stage mid-stream, restarted as a restartPolicy would: after one restart of
the killed stage (and none of the others), nothing lost, nothing doubled, caught up in 30 s.

The checker alone is short enough for `make test`; the full pipeline runs under `make faults`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig
from tests.integration.faults.verdict import assert_healed


@pytest.mark.faults
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", ["producer", "checker", "features"])
def test_kill_9_of_a_stage(folder: Path, stage: str) -> None:
    with Pipeline(folder, PipelineConfig(rate=1_000, seconds=75, observe=False)) as p:
        p.start()
        p.settle()  # past the features job's slow first micro-batches
        time.sleep(5)
        fault = p.kill_stage(stage)
        report = p.finish([fault])
    assert_healed(report, crashed=stage)


@pytest.mark.timeout(300)
def test_kill_9_of_the_checker_without_features(folder: Path) -> None:
    """The short version: producer and checker only, 25 s of ticks."""
    with Pipeline(
        folder, PipelineConfig(rate=1_000, seconds=25, features=False, observe=False)
    ) as p:
        p.start()
        time.sleep(8)
        fault = p.kill_stage("checker")
        report = p.finish([fault], drain_timeout_s=90)
    assert_healed(report, crashed="checker")
    assert report.restarts["checker"] == 1
