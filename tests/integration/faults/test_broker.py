"""The broker stopped mid-stream (cleanly, or killed) and back about 10 s later.

The local broker (noida-db) itself loses the last acknowledged messages on a restart;
the report counts that apart from what marketpipe lost, and only the latter fails the test.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig
from tests.integration.faults.verdict import assert_healed, broker_fault


@pytest.mark.faults
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_broker_restart_mid_stream(folder: Path, sig: signal.Signals) -> None:
    with Pipeline(folder, PipelineConfig(rate=1_000, seconds=75)) as p:
        p.start()
        p.settle()  # past the features job's slow first micro-batches
        time.sleep(5)
        fault = p.outage("kafka", 10, sig)
        report = p.finish([fault])
    reason = broker_fault(report)
    if reason is not None:
        print("\n".join(report.lines()))
        pytest.xfail(reason)
    assert_healed(report)
