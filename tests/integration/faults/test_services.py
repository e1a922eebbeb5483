"""The features job's sinks away for 20 s mid-stream: PostgreSQL (hot) and the S3 server (cold
store and raw archive). The job must retry, not die, and lose or double nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig
from tests.integration.faults.verdict import assert_healed


@pytest.mark.faults
@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", ["postgres", "s3"])
def test_sink_outage_of_20s(folder: Path, service: str) -> None:
    with Pipeline(folder, PipelineConfig(rate=1_000, seconds=75, observe=False)) as p:
        p.start()
        p.settle()  # past the features job's slow first micro-batches
        time.sleep(5)
        fault = p.outage(service, 20)
        report = p.finish([fault])
    assert_healed(report)
