"""The Kafka layer against the real local broker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import ConfigResource

from marketpipe.contracts import decode_tick
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import (
    Publisher,
    TopicMissing,
    TopicSpec,
    admin_client,
    ensure_topics,
    pipeline_topics,
    read_to_end,
    require_topic,
)
from marketpipe.runtime import StopFlag, heartbeat_age
from marketpipe.settings import FaultSettings, ProducerSettings, Settings
from tests.integration.helpers import service_env


class RecordingPublisher(Publisher):
    """The real publisher, keeping a copy of what it was handed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[tuple[bytes | None, bytes]] = []

    def publish(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        timestamps_ms: Sequence[int] | None = None,
    ) -> int:
        sent = super().publish(topic, keys, values, timestamps_ms)
        self.sent.extend(zip(keys[:sent], values[:sent], strict=True))
        return sent


def by_key(pairs: list[tuple[bytes | None, bytes]]) -> dict[bytes | None, list[bytes]]:
    grouped: dict[bytes | None, list[bytes]] = defaultdict(list)
    for key, value in pairs:
        grouped[key].append(value)
    return dict(grouped)


def test_produce_n_read_back_exactly_n_in_order(settings: Settings) -> None:
    n = 20_000
    cfg = ProducerSettings(symbol_count=12, tps=0, count=n, seed=5, batch_size=1000)
    publisher = RecordingPublisher(settings.kafka)
    summary = SyntheticProducer(cfg, publisher, settings.kafka.topic_raw).run(StopFlag())

    assert summary.ticks == n
    assert summary.delivery.delivered == n
    assert summary.delivery.ok
    read = [(m.key(), m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]
    assert len(read) == n
    # Same content, and per symbol exactly the produced order (key -> one partition).
    assert by_key(read) == by_key(publisher.sent)
    for key, values in by_key(read).items():
        seqs = [decode_tick(v).seq for v in values]
        assert seqs == list(range(1, len(seqs) + 1)), key


def test_message_timestamp_is_the_event_time(settings: Settings) -> None:
    cfg = ProducerSettings(symbol_count=2, tps=0, count=500, seed=1)
    SyntheticProducer(cfg, Publisher(settings.kafka), settings.kafka.topic_raw).run(StopFlag())
    for msg in read_to_end(settings.kafka, settings.kafka.topic_raw):
        _, stamp = msg.timestamp()
        assert stamp == orjson.loads(msg.value())["event_time"] // 1000


def test_faulty_stream_arrives_exactly_as_labelled(settings: Settings) -> None:
    faults = FaultSettings(malformed=0.05, duplicate=0.05, crossed=0.05, out_of_order=0.05)
    cfg = ProducerSettings(symbol_count=4, tps=0, count=5000, seed=9, faults=faults)
    publisher = RecordingPublisher(settings.kafka)
    summary = SyntheticProducer(cfg, publisher, settings.kafka.topic_raw).run(StopFlag())
    read = [(m.key(), m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]
    assert len(read) == summary.messages == summary.delivery.delivered
    assert summary.messages > 5000
    assert by_key(read) == by_key(publisher.sent)


def test_ensure_topics_is_idempotent_and_converges(settings: Settings) -> None:
    kafka = settings.kafka.model_copy(update={"topic_raw": f"conv-{uuid.uuid4().hex[:8]}"})
    specs = pipeline_topics(kafka)
    assert f"created {kafka.topic_raw}" in ensure_topics(kafka, specs)
    assert f"{kafka.topic_raw}: up to date" in ensure_topics(kafka, specs)

    grown = [
        TopicSpec(
            s.name, s.partitions + 2, s.replication_factor, {**s.config, "retention.ms": "60000"}
        )
        for s in specs
        if s.name == kafka.topic_raw
    ]
    actions = ensure_topics(kafka, grown)
    assert f"{kafka.topic_raw}: partitions 3 -> 5" in actions
    assert f"{kafka.topic_raw}: set retention.ms=60000" in actions
    admin = admin_client(kafka)
    meta = admin.list_topics(topic=kafka.topic_raw, timeout=10).topics[kafka.topic_raw]
    assert len(meta.partitions) == 5
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka.topic_raw)
    assert admin.describe_configs([resource])[resource].result()["retention.ms"].value == "60000"
    assert ensure_topics(kafka, grown) == [f"{kafka.topic_raw}: up to date"]


def test_reading_a_missing_topic_says_how_to_fix_it(settings: Settings) -> None:
    with pytest.raises(TopicMissing, match="marketpipe topics"):
        list(read_to_end(settings.kafka, "no-such-topic-" + uuid.uuid4().hex))


def test_require_topic_waits_for_a_topic_created_meanwhile(settings: Settings) -> None:
    """In a Helm install the services start before the topics Job has run: they wait."""
    import threading

    name = "late-topic-" + uuid.uuid4().hex
    kafka = settings.kafka.model_copy(update={"topic_wait_s": 30.0})
    creator = threading.Timer(1.5, ensure_topics, (kafka, [TopicSpec(name, 2, 1)]))
    creator.start()
    started = time.monotonic()
    try:
        assert require_topic(kafka, name) == 2
    finally:
        creator.join()
    assert time.monotonic() - started >= 1.0


def test_require_topic_gives_up_after_its_wait(settings: Settings) -> None:
    kafka = settings.kafka.model_copy(update={"topic_wait_s": 1.0})
    started = time.monotonic()
    with pytest.raises(TopicMissing, match="did not answer within 1s"):
        require_topic(kafka, "never-" + uuid.uuid4().hex)
    assert time.monotonic() - started < 10


def test_read_since_a_time_skips_older_messages(settings: Settings) -> None:
    publisher = Publisher(settings.kafka)
    topic = settings.kafka.topic_raw
    # Recent stamps: stamps older than the topic's retention could be deleted on arrival.
    t = int(time.time() * 1000) - 60_000
    publisher.publish(topic, [b"a", b"b"], [b"old-a", b"old-b"], [t + 1_000, t + 2_000])
    publisher.publish(
        topic, [b"a", b"b", b"a"], [b"new-a", b"new-b", b"late-a"], [t + 5_000, t + 6_000, t + 500]
    )
    assert publisher.close().ok
    got = sorted(m.value() for m in read_to_end(settings.kafka, topic, since_ms=t + 5_000))
    # The late message sits after the cut in its partition's log, so it is included.
    assert got == [b"late-a", b"new-a", b"new-b"]
    assert list(read_to_end(settings.kafka, topic, since_ms=10**13)) == []


def test_a_service_waiting_for_its_topic_stays_alive_then_gives_up(
    settings: Settings, tmp_path: Path
) -> None:
    """The liveness probe must not kill a service that waits for the topics Job."""
    alive = tmp_path / "alive"
    env = service_env(settings) | {
        "MARKETPIPE_HEALTH_FILE": str(alive),
        "MARKETPIPE_KAFKA__TOPIC_WAIT_S": "8",
    }
    missing = "never-" + uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketpipe", "produce", "--topic", missing, "--count", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 6
        while not alive.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(4)  # longer than the beat interval: still beating while waiting
        assert heartbeat_age(alive) is not None
        assert heartbeat_age(alive) < 3.0  # type: ignore[operator]
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert f"topic {missing!r} did not answer within 8s" in err
