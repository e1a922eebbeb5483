"""Records that can never be forwarded as they are must not stall the checker (real broker).

The broker's limit is its topic config ``max.message.bytes`` (Kafka's default 1048588, the
size of a record batch with its overhead; Redpanda's default is 1 MiB); librdkafka's own
``message.max.bytes`` defaults to 1,000,000. The local broker enforces the topic config as
Kafka does (checked: a 100,000-byte limit refuses 100,000 bytes and takes 99,000).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest

from marketpipe.kafka import Publisher, ensure_topics, pipeline_topics, read_to_end
from marketpipe.kafka.deadletter import H_ORIGINAL_SIZE, H_REASONS, H_SHA256, H_TRUNCATED
from marketpipe.kafka.topics import TopicSpec
from marketpipe.quality.service import REFUSED_KEEP_BYTES, QualityService
from marketpipe.runtime import StopFlag
from marketpipe.settings import KafkaSettings, QualitySettings, Settings
from tests.integration.helpers import fresh_topic_names

BROKER_LIMIT = 1_048_588  # Kafka's default max.message.bytes, the local broker's too
PRODUCER_LIMIT = 1_000_000  # librdkafka's default message.max.bytes


def topics_with_limits(settings: Settings, limits: dict[str, int]) -> KafkaSettings:
    """Fresh pipeline topics, some with their own max.message.bytes."""
    kafka = fresh_topic_names(settings.kafka, partitions=2)
    roles = {"raw": kafka.topic_raw, "valid": kafka.topic_valid, "dlq": kafka.topic_dlq}
    by_name = {roles[role]: limit for role, limit in limits.items()}
    specs: list[TopicSpec] = []
    for spec in pipeline_topics(kafka):
        limit = by_name.get(spec.name)
        config = spec.config if limit is None else {**spec.config, "max.message.bytes": str(limit)}
        specs.append(replace(spec, config=config))
    ensure_topics(kafka, specs)
    return kafka


def good_tick(symbol: str, seq: int) -> bytes:
    now = time.time_ns() // 1000
    return (
        b'{"symbol":"%s","event_time":%d,"seq":%d,"price":10.0,"size":1.0,"bid":9.9,'
        b'"ask":10.1,"bid_size":null,"ask_size":null,"source":"poison"}'
        % (symbol.encode(), now, seq)
    )


def run_checker(kafka: KafkaSettings, **cfg: object) -> QualityService:
    quality = QualitySettings(
        group_id=f"q-{uuid.uuid4().hex[:8]}",
        instance_id=uuid.uuid4().hex[:8],
        **cfg,  # type: ignore[arg-type]
    )
    service = QualityService(kafka, quality)
    service.run(StopFlag(), idle_exit_s=2.0)
    return service


def test_records_around_every_size_limit_reach_the_dlq_and_never_stall(
    settings: Settings,
) -> None:
    # ticks.raw takes up to 3 MB here so records above the other limits can get in at all.
    kafka = topics_with_limits(settings, {"raw": 3_000_000})
    rng = np.random.default_rng(7)
    sizes = {
        "under the producer limit": PRODUCER_LIMIT - 100,
        "over the producer limit": PRODUCER_LIMIT + 1,
        "just under the broker limit": BROKER_LIMIT - 200,
        "at the broker limit": BROKER_LIMIT,
        "just over the broker limit": BROKER_LIMIT + 200,
        "2 MB": 2_000_000,
    }
    big = {label: rng.bytes(n) for label, n in sizes.items()}
    writer = Publisher(kafka, extra_config={"message.max.bytes": 5_000_000})
    seq = 0
    for value in big.values():
        for _ in range(3):
            seq += 1
            writer.produce(kafka.topic_raw, b"AAPL", good_tick("AAPL", seq))
        writer.produce(kafka.topic_raw, b"AAPL", value)
    report = writer.close()
    assert report.ok, report.lines()

    service = run_checker(kafka)
    r = service.report
    assert r.consumed == seq + len(big)
    assert (r.counts.valid, r.counts.dlq) == (seq, len(big))
    assert r.aborted_batches == 0  # cut before producing: nothing is refused
    assert r.lag == 0

    cap = QualitySettings().dlq_max_value_bytes
    dlq = list(read_to_end(kafka, kafka.topic_dlq))
    assert len(dlq) == len(big)
    for msg, (label, value) in zip(dlq, big.items(), strict=True):  # one partition: key AAPL
        headers = dict(msg.headers() or [])
        assert msg.value() == value[:cap], label
        assert headers[H_SHA256].decode() == hashlib.sha256(value).hexdigest(), label
        assert int(headers[H_ORIGINAL_SIZE]) == len(value), label
        assert int(headers[H_TRUNCATED]) == cap, label
        assert "too_large" in headers[H_REASONS].decode().split(","), label
    valid = [m.value() for m in read_to_end(kafka, kafka.topic_valid)]
    assert len(valid) == seq


@pytest.mark.parametrize(
    ("records", "dlq_limit", "kept"),
    [(1, 8_192, REFUSED_KEEP_BYTES), (4, 8_192, REFUSED_KEEP_BYTES), (2, 900, 0)],
)
def test_a_record_the_broker_refuses_for_good_is_singled_out_not_retried_forever(
    settings: Settings, records: int, dlq_limit: int, kept: int
) -> None:
    """The DLQ topic takes at most ``dlq_limit`` bytes: the DLQ copy of a 20 KB malformed
    record (cut at the default 64 KiB, so whole) is refused. The checker must find which
    record fails, send it cut to 1 KiB (or, refused again, with no value at all: headers
    with its size and sha256), and go on; the good ticks around it are forwarded once."""
    kafka = topics_with_limits(settings, {"dlq": dlq_limit})
    rng = np.random.default_rng(3)
    writer = Publisher(kafka)
    bad: list[bytes] = []
    seq = 0
    for _ in range(records):
        for _ in range(50):
            seq += 1
            writer.produce(kafka.topic_raw, b"MSFT", good_tick("MSFT", seq))
        bad.append(rng.bytes(20_000))
        writer.produce(kafka.topic_raw, b"MSFT", bad[-1])
    for _ in range(50):
        seq += 1
        writer.produce(kafka.topic_raw, b"MSFT", good_tick("MSFT", seq))
    assert writer.close().ok

    service = run_checker(kafka, batch_size=500)
    r = service.report
    assert r.consumed == seq + len(bad)
    assert (r.counts.valid, r.counts.dlq) == (seq, len(bad))
    assert r.isolated == len(bad)
    assert 0 < r.aborted_batches <= 3 * len(bad)  # found, not retried forever
    assert r.lag == 0

    dlq = list(read_to_end(kafka, kafka.topic_dlq))
    assert [m.value() or b"" for m in dlq] == [b[:kept] for b in bad]
    for msg, value in zip(dlq, bad, strict=True):
        headers = dict(msg.headers() or [])
        assert headers[H_REASONS] == b"too_large"
        assert headers[H_SHA256].decode() == hashlib.sha256(value).hexdigest()
    valid = [m.value() for m in read_to_end(kafka, kafka.topic_valid)]
    assert len(valid) == seq == len(set(valid))
