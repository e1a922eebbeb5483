"""Records no stage can forward as they are: each must reach the DLQ (cut to fit, identified
by its sha256) while the ticks around it flow on, and the checker must never stall.

Sizes: 1,000,000 random bytes (over the checker's producer's message.max.bytes once its
headers are added); at, just under and just over the broker's max.message.bytes (the raw
topic is given room for 2 MB, as an operator might, while the DLQ keeps the default); and
1,500,000 bytes, over the producer's message.max.bytes before any header.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from benchmarks.pipeline import Pipeline, PipelineConfig
from marketpipe.kafka import read_to_end
from marketpipe.kafka.deadletter import H_ORIGINAL_SIZE, H_REASONS, H_SHA256, TOO_LARGE
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
    with Pipeline(
        folder, PipelineConfig(rate=1_000, seconds=20, features=False, observe=False)
    ) as p:
        p.set_topic_config(p.settings.kafka.topic_raw, {"max.message.bytes": "2000000"})
        p.start()
        time.sleep(5)
        values = [os.urandom(n) for n in SIZES.values()]
        assert p.produce_raw(values) == len(values)
        report = p.finish(drain_timeout_s=60)
        copies = dead_letter_copies(p)
    assert_healed(report)  # each record in the DLQ exactly once, by its sha256, nothing stalled
    for value in values:
        digest = hashlib.sha256(value).hexdigest()
        assert digest in copies, f"no DLQ copy of the {len(value):,}-byte record"
        size, headers = copies[digest]
        assert size < BROKER_MAX
        if size < len(value):  # cut to fit: says so, and how large it was
            assert headers[H_ORIGINAL_SIZE] == str(len(value)).encode()
            assert TOO_LARGE in headers[H_REASONS].decode().split(",")


def dead_letter_copies(p: Pipeline) -> dict[str, tuple[int, dict[str, bytes]]]:
    """DLQ records that are not ticks, by the sha256 of their original value."""
    out = {}
    for msg in read_to_end(p.settings.kafka, p.settings.kafka.topic_dlq):
        given = msg.headers() or []
        pairs = given.items() if isinstance(given, dict) else given
        headers = {k: v if isinstance(v, bytes) else b"" for k, v in pairs}
        value = msg.value() or b""
        digest = headers.get(H_SHA256, b"").decode() or hashlib.sha256(value).hexdigest()
        out[digest] = (len(value), headers)
    return out
