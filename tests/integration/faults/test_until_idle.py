"""`marketpipe quality --until-idle` ends when the checker has caught up, not when the broker
goes away: an outage looks like no input too, and a batch job would report done while its
input was still there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig

IDLE_S = 3.0


@pytest.mark.timeout(300)
def test_until_idle_waits_out_a_broker_outage(folder: Path) -> None:
    with Pipeline(folder, PipelineConfig(rate=500, seconds=4, features=False)) as p:
        checker = p.start_stage("checker", lambda n: ["quality", "--until-idle", f"{IDLE_S:g}"])
        p.start_sampling()
        producer = p.start_producer()
        assert producer.wait(60)
        deadline = time.monotonic() + 60
        while (sample := p.lag_now()) is None or sample.lag("checker") != 0:
            assert time.monotonic() < deadline, "the checker never caught up"
            time.sleep(0.5)
        down_s = 3 * IDLE_S  # no input for longer than IDLE_S
        fault = p.outage("kafka", down_s=down_s)
        assert checker.wait(90), checker.tail()
        (run,) = checker.runs
        summary = run.stdout()
    assert run.exit_code == 0, checker.tail()
    assert run.ended is not None
    # The broker starts again down_s after it stopped; "cleared" is when it answered the harness.
    assert run.ended >= fault.started + down_s, "exited during the outage"
    assert "stopped by idle 3s" in summary
    assert "lag at exit (end offset - committed offset): 0" in summary
