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
from tests.integration.faults.verdict import assert_healed, lost_after_read


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
    acc = report.accounting
    if acc.lost and acc.uncommitted == len(acc.lost):
        # Every missing tick sits in ticks.valid's log behind a transaction that was open when
        # the broker stopped. noida-db forgets its transaction coordinator state in a restart
        # (the re-registered id gets a new producer id) and never times a transaction out, so
        # nothing aborts it; Redpanda and Kafka abort it when the id registers again or after
        # transaction.timeout.ms. A broker fault, not marketpipe's: on a cluster, deploy.yml's
        # fault check is where this is shown.
        print("\n".join(report.lines()))
        pytest.xfail(f"local broker left {acc.uncommitted} ticks behind an unresolved transaction")
    lost = lost_after_read(report)
    if lost:
        print("\n".join(report.lines()))
        pytest.xfail(
            f"local broker lost {lost} ticks of ticks.valid after the features job read them, "
            "and wrote later ticks at their offsets"
        )
    assert_healed(report)
