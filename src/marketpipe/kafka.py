"""Thin typed wrappers over confluent-kafka: configs, a counting publisher, topic bootstrap.

Broker-agnostic on purpose: Redpanda in the cluster, any Kafka-API broker locally.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter as TallyCounter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from marketpipe.runtime import wait_for
from marketpipe.settings import KafkaSettings
from marketpipe.telemetry import ProducerInstruments

log = logging.getLogger(__name__)

#: Sample one delivery latency in this many acknowledgements.
LATENCY_SAMPLE_EVERY = 64
#: How many distinct delivery errors are kept verbatim for the summary.
MAX_KEPT_ERRORS = 5


class TopicMissing(Exception):
    """A topic a command needs does not exist on the broker."""


def client_config(cfg: KafkaSettings) -> dict[str, Any]:
    """Connection properties shared by producers, consumers and admin clients."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": cfg.client_id,
        "security.protocol": cfg.security_protocol,
    }
    if cfg.sasl_mechanism:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
        conf["sasl.username"] = cfg.sasl_username
        conf["sasl.password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else ""
    conf.update(cfg.extra_config)
    return conf


def producer_config(cfg: KafkaSettings, transactional_id: str | None = None) -> dict[str, Any]:
    """Idempotent, acks=all producer tuned for throughput (batching, lz4)."""
    conf = client_config(cfg)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": cfg.linger_ms,
            "batch.size": cfg.batch_size,
            "compression.type": cfg.compression_type,
            "queue.buffering.max.messages": cfg.queue_max_messages,
            "delivery.timeout.ms": cfg.delivery_timeout_ms,
        }
    )
    if transactional_id:
        conf["transactional.id"] = transactional_id
    conf.update(cfg.extra_config)
    return conf


def consumer_config(cfg: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual offset storage: services store offsets only once their output is durable."""
    conf = client_config(cfg)
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    conf.update(overrides)
    conf.update(cfg.extra_config)
    return conf


@dataclass
class DeliveryReport:
    """What happened to everything handed to a Publisher."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    delivered_bytes: int = 0
    errors: TallyCounter[str] = field(default_factory=TallyCounter)
    first_errors: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Queued but neither acknowledged nor failed (only non-zero after a flush timeout)."""
        return self.queued - self.delivered - self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0


class Publisher:
    """An idempotent producer that counts every message until the broker acknowledges it."""

    def __init__(
        self,
        cfg: KafkaSettings,
        instruments: ProducerInstruments | None = None,
        attributes: dict[str, str] | None = None,
        transactional_id: str | None = None,
    ) -> None:
        conf = producer_config(cfg, transactional_id)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        self._producer = Producer(conf)
        self.report = DeliveryReport()
        self._instruments = instruments
        self._attributes = attributes or {}
        self._latencies_ms: list[float] = []
        self._reported = DeliveryReport()
        self.fatal_error: str | None = None
        self._bootstrap = cfg.bootstrap_servers

    # -- callbacks (run inside poll/flush on this thread) ------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        report = self.report
        if err is None:
            report.delivered += 1
            report.delivered_bytes += len(msg)
            if report.delivered % LATENCY_SAMPLE_EVERY == 0:
                latency = msg.latency()
                if latency is not None:
                    self._latencies_ms.append(latency * 1000.0)
            return
        report.failed += 1
        report.errors[err.name()] += 1
        if len(report.first_errors) < MAX_KEPT_ERRORS:
            text = f"{msg.topic()}[{msg.partition()}] key={msg.key()!r}: {err.str()}"
            report.first_errors.append(text)
            log.error("delivery failed: %s", text)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal_error = err.str()
            log.error("fatal producer error: %s", err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("no broker reachable at %s: %s", self._bootstrap, err.str())
        else:
            log.warning("producer: %s", err.str())

    # -- producing ----------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        timestamps_ms: Sequence[int] | None = None,
    ) -> None:
        """Queue a batch; blocks (serving delivery reports) while the local queue is full."""
        producer = self._producer
        produce = producer.produce
        stamps = timestamps_ms if timestamps_ms is not None else [0] * len(values)
        for key, value, ts in zip(keys, values, stamps, strict=True):
            while True:
                try:
                    produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
        self.report.queued += len(values)
        producer.poll(0)
        self.record_metrics()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        """Queue one message (with headers); prefer ``publish`` for batches."""
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=list(headers or ()), timestamp=timestamp_ms
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self.report.queued += 1

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def record_metrics(self) -> None:
        """Push what changed since the last call to the instruments (once per batch)."""
        inst = self._instruments
        if inst is None:
            self._latencies_ms.clear()
            return
        now, last, attrs = self.report, self._reported, self._attributes
        if now.delivered != last.delivered:
            inst.produced.add(now.delivered - last.delivered, attrs)
            inst.produced_bytes.add(now.delivered_bytes - last.delivered_bytes, attrs)
        if now.failed != last.failed:
            inst.delivery_errors.add(now.failed - last.failed, attrs)
        for latency in self._latencies_ms:
            inst.produce_latency.record(latency, attrs)
        self._latencies_ms.clear()
        self._reported = DeliveryReport(
            delivered=now.delivered, failed=now.failed, delivered_bytes=now.delivered_bytes
        )

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for acknowledgements; return how many messages are still in flight."""
        remaining: int = self._producer.flush(timeout_s)
        self.record_metrics()
        return remaining

    def close(self, timeout_s: float = 30.0) -> DeliveryReport:
        remaining = self.flush(timeout_s)
        if remaining:
            log.error("%d messages still unacknowledged after %.0fs flush", remaining, timeout_s)
        return self.report


# -- topics --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def pipeline_topics(cfg: KafkaSettings) -> list[TopicSpec]:
    """The three topics of the pipeline, shaped by settings."""

    def spec(name: str, retention_ms: int) -> TopicSpec:
        return TopicSpec(
            name=name,
            partitions=cfg.partitions,
            replication_factor=cfg.replication_factor,
            config={"retention.ms": str(retention_ms), "cleanup.policy": "delete"},
        )

    return [
        spec(cfg.topic_raw, cfg.retention_ms),
        spec(cfg.topic_valid, cfg.retention_ms),
        spec(cfg.topic_dlq, cfg.dlq_retention_ms),
    ]


def admin_client(cfg: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(cfg))


def wait_for_broker(cfg: KafkaSettings, timeout_s: float | None = None) -> None:
    """Block until the broker answers a metadata request, or raise DependencyUnavailable."""
    admin = admin_client(cfg)
    wait_for(
        f"Kafka broker at {cfg.bootstrap_servers}",
        lambda: admin.list_topics(timeout=2.0),
        timeout_s if timeout_s is not None else cfg.connect_timeout_s,
    )


def ensure_topics(cfg: KafkaSettings, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create missing topics and converge partitions and configs; safe to run any number of times.

    Returns one human-readable line per action or finding.
    """
    admin = admin_client(cfg)
    existing = admin.list_topics(timeout=timeout_s).topics
    actions: list[str] = []

    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=s.config)
                for s in missing
            ],
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                actions.append(f"created {name}")
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                actions.append(f"{name} exists (created concurrently)")

    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None:
            continue
        actions.extend(_converge_topic(admin, spec, len(meta.partitions), timeout_s))
    return actions


def _converge_topic(admin: AdminClient, spec: TopicSpec, partitions: int, timeout_s: float) -> list[str]:
    actions: list[str] = []
    if partitions < spec.partitions:
        futures = admin.create_partitions(
            [NewPartitions(spec.name, spec.partitions)], request_timeout=timeout_s
        )
        for future in futures.values():
            future.result()
        actions.append(f"{spec.name}: partitions {partitions} -> {spec.partitions}")
    elif partitions > spec.partitions:
        actions.append(
            f"{spec.name}: has {partitions} partitions, more than the configured "
            f"{spec.partitions}; left as is (partitions cannot shrink)"
        )
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    current = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result()
    changes = [
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        for key, value in spec.config.items()
        if key not in current or current[key].value != value
    ]
    if changes:
        resource = ConfigResource(
            ConfigResource.Type.TOPIC, spec.name, incremental_configs=changes
        )
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        actions.append(
            f"{spec.name}: set " + ", ".join(f"{c.name}={c.value}" for c in changes)
        )
    if not actions:
        actions.append(f"{spec.name}: up to date")
    return actions


def require_topic(cfg: KafkaSettings, topic: str, timeout_s: float = 10.0) -> int:
    """Return the topic's partition count, or raise TopicMissing with the fix."""
    meta = admin_client(cfg).list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise TopicMissing(
            f"topic {topic!r} does not exist on {cfg.bootstrap_servers}; "
            "create it with `marketpipe topics`"
        )
    return len(meta.partitions)


def read_to_end(cfg: KafkaSettings, topic: str, timeout_s: float = 30.0) -> Iterator[Message]:
    """Yield every committed message of ``topic`` present when called, partition by partition order.

    Uses a throwaway group with no commits, so it never disturbs services' offsets.
    """
    require_topic(cfg, topic)
    consumer = Consumer(
        consumer_config(
            cfg,
            f"marketpipe-inspect-{uuid.uuid4().hex[:12]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    try:
        meta = consumer.list_topics(topic=topic, timeout=timeout_s).topics[topic]
        assignments, remaining = [], {}
        for pid in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=timeout_s)
            if high > low:
                assignments.append(TopicPartition(topic, pid, low))
                remaining[pid] = high
        if not assignments:
            return
        consumer.assign(assignments)
        idle_deadline = _Deadline(timeout_s)
        while remaining:
            batch = consumer.consume(10_000, 0.5)
            if not batch:
                if idle_deadline.passed():
                    raise TimeoutError(
                        f"{topic}: no progress for {timeout_s:g}s, partitions left {sorted(remaining)}"
                    )
                continue
            idle_deadline.reset()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.pop(msg.partition(), None)
                        continue
                    raise KafkaException(err)
                pid = msg.partition()
                if pid not in remaining:
                    continue
                yield msg
                if msg.offset() >= remaining[pid] - 1:
                    del remaining[pid]
    finally:
        consumer.close()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        import time

        self._clock = time.monotonic
        self._seconds = seconds
        self._end = self._clock() + seconds

    def reset(self) -> None:
        self._end = self._clock() + self._seconds

    def passed(self) -> bool:
        return self._clock() >= self._end
