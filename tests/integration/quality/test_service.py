"""The quality checker against the real broker: exact routing, kill -9 and restart, fuzz."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from marketpipe.ingest.faults import GOOD
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher, consumer_config, read_to_end
from marketpipe.kafka.deadletter import H_ORIGINAL_SIZE, H_SHA256
from marketpipe.quality.service import H_OFFSET, H_PARTITION, H_REASONS, H_TOPIC, QualityService
from marketpipe.runtime import StopFlag
from marketpipe.settings import FaultSettings, ProducerSettings, QualitySettings, Settings
from tests.integration.helpers import service_env

FAULTS = FaultSettings(malformed=0.02, crossed=0.02, duplicate=0.02, out_of_order=0.02)
EXPECTED_REASON = {
    "crossed": {"crossed"},
    "duplicate": {"duplicate"},
    "out_of_order": {"out_of_order"},
    "malformed": {"empty", "invalid_json", "not_object", "missing_field", "wrong_type"},
}

Sent = list[tuple[bytes, bytes, str]]  # key, value, label


def produce_labelled(settings: Settings, n: int, seed: int = 3) -> Sent:
    cfg = ProducerSettings(symbol_count=10, tps=0, seed=seed, faults=FAULTS)
    gen = SyntheticProducer(cfg, publisher=None, topic="")  # type: ignore[arg-type]
    publisher = Publisher(settings.kafka)
    sent: Sent = []
    now = time.time_ns() // 1000
    for start in range(0, n, 10_000):
        times = now - 5_000_000 + np.arange(start, start + 10_000, dtype=np.int64)
        keys, values, labels, stamps = gen.encode(gen.market.generate(times))
        publisher.publish(settings.kafka.topic_raw, keys, values, stamps)
        sent += zip(keys, values, labels, strict=True)
    assert publisher.close().ok
    return sent


def quality_cfg(**kw: object) -> QualitySettings:
    return QualitySettings(
        group_id=f"q-{uuid.uuid4().hex[:8]}",
        instance_id=uuid.uuid4().hex[:8],
        **kw,  # type: ignore[arg-type]
    )


def assert_routed_exactly(settings: Settings, sent: Sent) -> None:
    """Each input once, where its label says, DLQ copies carrying reasons and provenance."""
    valid = [(m.key(), m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_valid)]
    dlq = list(read_to_end(settings.kafka, settings.kafka.topic_dlq))
    expected_valid: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value, label in sent:
        if label == GOOD:
            expected_valid[key].append(value)
    got_valid: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in valid:
        got_valid[key].append(value)
    assert dict(got_valid) == dict(expected_valid)  # same bytes, same per-symbol order

    expected_dlq = Counter((value, label) for _, value, label in sent if label != GOOD)
    got_dlq: Counter[tuple[bytes, str]] = Counter()
    for msg in dlq:
        headers = dict(msg.headers() or [])
        reasons = set(headers[H_REASONS].decode().split(","))
        assert headers[H_TOPIC].decode() == settings.kafka.topic_raw
        assert int(headers[H_PARTITION]) >= 0
        assert int(headers[H_OFFSET]) >= 0
        label = next(lab for lab, exp in EXPECTED_REASON.items() if reasons <= exp)
        got_dlq[(msg.value(), label)] += 1
    assert got_dlq == expected_dlq
    assert len(valid) + len(dlq) == len(sent)


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_mixed_stream_is_routed_exactly(settings: Settings, delivery: str) -> None:
    sent = produce_labelled(settings, 30_000)
    service = QualityService(settings.kafka, quality_cfg(delivery=delivery, batch_size=2000))
    report = service.run(StopFlag(), idle_exit_s=2.0)
    assert report.consumed == len(sent)
    assert report.balanced
    assert report.counts.gap_ticks == 0
    assert report.aborted_batches == 0
    assert_routed_exactly(settings, sent)


def valid_high_watermark(settings: Settings) -> int:
    consumer = Consumer(consumer_config(settings.kafka, f"peek-{uuid.uuid4().hex[:6]}"))
    try:
        meta = consumer.list_topics(settings.kafka.topic_valid, timeout=10)
        parts = meta.topics[settings.kafka.topic_valid].partitions
        return sum(
            consumer.get_watermark_offsets(
                TopicPartition(settings.kafka.topic_valid, p), timeout=5
            )[1]
            for p in parts
        )
    finally:
        consumer.close()


def test_kill_9_and_restart_accounts_for_every_input_exactly_once(settings: Settings) -> None:
    sent = produce_labelled(settings, 200_000, seed=8)
    group, instance = f"q-{uuid.uuid4().hex[:8]}", "checker-0"
    env = service_env(settings) | {
        "MARKETPIPE_QUALITY__BATCH_SIZE": "1000",
        "MARKETPIPE_QUALITY__SESSION_TIMEOUT_MS": "6000",
    }
    args = [
        sys.executable,
        "-m",
        "marketpipe",
        "quality",
        "--group",
        group,
        "--instance-id",
        instance,
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while valid_high_watermark(settings) < 20_000 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream, probably mid-transaction
    proc.wait()
    assert valid_high_watermark(settings) < len(sent) * 0.9, "killed too late to prove anything"

    restarted = subprocess.run(
        [*args, "--until-idle", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert "(balanced)" in restarted.stdout
    assert "0 missing ticks in 0 gaps" in restarted.stdout  # restored state: no false gaps
    assert_routed_exactly(settings, sent)


def test_malformed_input_of_any_kind_goes_to_the_dlq(settings: Settings) -> None:
    good = (
        b'{"symbol":"AAPL","event_time":%d,"seq":1,"price":10.0,"size":1.0,"bid":9.9,'
        b'"ask":10.1,"bid_size":null,"ask_size":null,"source":"fuzz"}' % (time.time_ns() // 1000)
    )
    rng = np.random.default_rng(0)
    cases: list[tuple[bytes | None, bytes, str]] = [
        *[(b"AAPL", rng.bytes(int(rng.integers(1, 200))), "random bytes") for _ in range(20)],
        *[(b"AAPL", good[: int(i)], "truncated") for i in rng.integers(1, len(good) - 1, 10)],
        (b"AAPL", good.replace(b"10.0", b"NaN"), "NaN"),
        (b"AAPL", good.replace(b"10.0", b"Infinity"), "Infinity"),
        (b"AAPL", good.replace(b"10.0", b"1e999"), "overflowing float"),
        (b"AAPL", good.replace(b'"seq":1', b'"seq":99999999999999999999999'), "huge integer"),
        (b"AAPL", good.replace(b'"AAPL"', '"ÄAPL"'.encode()), "unicode symbol"),
        (b"AAPL", good.replace(b'"size":1.0,', b""), "missing field"),
        (b"AAPL", good.replace(b"}", b',"venue":"X"}'), "extra field"),
        (b"AAPL", b'{"symbol":"' + b"A" * 999_000 + b'"}', "1 MB message"),
        (b"AAPL", b"", "empty value"),
        (None, good, "null key"),
        (b"MSFT", good, "key is not the symbol"),
        (b"AAPL", b"[]", "array"),
        (b"AAPL", b"null", "JSON null"),
    ]
    publisher = Publisher(settings.kafka)
    for key, value, _ in cases:
        publisher.produce(settings.kafka.topic_raw, key, value)
    assert publisher.close().ok

    report = QualityService(settings.kafka, quality_cfg()).run(StopFlag(), idle_exit_s=2.0)
    assert report.consumed == len(cases)
    assert report.counts.dlq == len(cases)
    assert report.balanced
    dlq = list(read_to_end(settings.kafka, settings.kafka.topic_dlq))
    cap = QualitySettings().dlq_max_value_bytes  # larger values reach the DLQ cut to this
    assert sorted(m.value() or b"" for m in dlq) == sorted(v[:cap] for _, v, _ in cases)
    assert all(dict(m.headers() or [])[H_REASONS] for m in dlq)
    (big,) = [dict(m.headers() or []) for m in dlq if len(m.value() or b"") == cap]
    original = next(v for _, v, label in cases if label == "1 MB message")
    assert big[H_SHA256].decode() == hashlib.sha256(original).hexdigest()
    assert int(big[H_ORIGINAL_SIZE]) == len(original)
    assert "too_large" in big[H_REASONS].decode().split(",")
    assert list(read_to_end(settings.kafka, settings.kafka.topic_valid)) == []


def test_a_checker_kept_from_its_partitions_says_why(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A static member that stopped keeps its partitions until the broker evicts it (the local
    broker never does): a checker joining that group must say so, not wait in silence."""
    import threading

    import marketpipe.quality.service as service_module

    monkeypatch.setattr(service_module, "JOIN_WARN_EVERY_S", 1.0)
    cfg = quality_cfg()
    ghost = Consumer(consumer_config(settings.kafka, cfg.group_id, **{
        "group.instance.id": "ghost", "session.timeout.ms": 60_000}))  # fmt: skip
    ghost.subscribe([settings.kafka.topic_raw])
    deadline = time.monotonic() + 30
    while not ghost.assignment() and time.monotonic() < deadline:
        ghost.poll(0.2)
    assert ghost.assignment(), "the ghost member never got its partitions"
    ghost.close()  # a static member does not leave its group on close

    stop = StopFlag()
    checker = QualityService(settings.kafka, cfg)
    thread = threading.Thread(target=checker.run, args=(stop,))
    with caplog.at_level("WARNING", logger="marketpipe.quality.service"):
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "no partitions" not in caplog.text:
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()  # a stop is honoured while waiting for partitions
    warning = caplog.text
    assert f"no partitions of {settings.kafka.topic_raw} assigned" in warning
    assert f"group {cfg.group_id}" in warning
    assert "MARKETPIPE_QUALITY__GROUP_ID" in warning
