"""Records no stage can forward as they are: each must reach the DLQ (cut to fit, identified
by its sha256) while the ticks around it flow on, and the checker must never stall.

Sizes: 1,000,000 random bytes (over the checker's producer's message.max.bytes once its
headers are added); at, just under and just over the broker's max.message.bytes (the raw
topic is given room for 2 MB, as an operator might, while the DLQ keeps the default); and
1,500,000 bytes, over the producer's message.max.bytes before any header.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig
from tests.integration.faults.verdict import assert_healed

#: The broker's default max.message.bytes and its framing of one keyless uncompressed record.
BROKER_MAX = 1_048_588
FRAMING = 72
LARGEST_VALUE = BROKER_MAX - FRAMING
SIZES = {
    "1,000,000 random bytes": 1_000_000,
    "just under the broker's limit": LARGEST_VALUE - 1_000,
    "at the broker's limit": LARGEST_VALUE,
    "just over the broker's limit": LARGEST_VALUE + 1,
    "over the producer's message.max.bytes": 1_500_000,
}


@pytest.mark.timeout(300)
def test_oversized_records_go_to_the_dlq_and_nothing_stalls(folder: Path) -> None:
    with Pipeline(folder, PipelineConfig(rate=1_000, seconds=20, features=False)) as p:
        p.set_topic_config(p.settings.kafka.topic_raw, {"max.message.bytes": "2000000"})
        p.start()
        time.sleep(5)
        values = [os.urandom(n) for n in SIZES.values()]
        assert p.produce_raw(values) == len(values)
        report = p.finish(drain_timeout_s=60)
    assert_healed(report)
    assert report.accounting.dlq >= len(values)
