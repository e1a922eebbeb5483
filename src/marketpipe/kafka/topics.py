"""Topic bootstrap: create missing topics and converge partitions and configs, idempotently."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from marketpipe.kafka.config import client_config
from marketpipe.runtime import DependencyUnavailable, wait_for
from marketpipe.settings import KafkaSettings

log = logging.getLogger(__name__)


class TopicMissing(Exception):
    """A topic a command needs does not exist on the broker."""


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
        TopicSpec(
            name=cfg.topic_quality_state,
            partitions=cfg.partitions,  # must match topic_raw: state follows its partitions
            replication_factor=cfg.replication_factor,
            config={"cleanup.policy": "compact", "retention.ms": "-1"},
        ),
    ]


def admin_client(cfg: KafkaSettings, quiet: bool = False) -> AdminClient:
    """``quiet`` silences librdkafka's connection errors, for probes that expect to fail."""
    conf = client_config(cfg)
    if quiet:
        conf["log_level"] = 0
    return AdminClient(conf)


def wait_for_broker(cfg: KafkaSettings, timeout_s: float | None = None) -> None:
    """Block until the broker answers a metadata request (``connect_timeout_s`` by default),
    or raise DependencyUnavailable saying where it looked and what to do."""
    admin = admin_client(cfg, quiet=True)
    limit = timeout_s if timeout_s is not None else cfg.connect_timeout_s
    deadline = time.monotonic() + limit
    wait_for(
        f"Kafka broker at {cfg.bootstrap_servers}",
        # Each attempt ends by the deadline, so the answer comes within the limit.
        lambda: admin.list_topics(timeout=min(2.0, max(0.2, deadline - time.monotonic()))),
        limit,
        hint="is it running? `marketpipe local up` starts the local one; "
        "MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS says where it is",
    )


def ensure_topics(
    cfg: KafkaSettings, specs: Sequence[TopicSpec], timeout_s: float = 30.0
) -> list[str]:
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
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=s.config,
                )
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


def _converge_topic(
    admin: AdminClient, spec: TopicSpec, partitions: int, timeout_s: float
) -> list[str]:
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
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=changes)
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        actions.append(f"{spec.name}: set " + ", ".join(f"{c.name}={c.value}" for c in changes))
    if not actions:
        actions.append(f"{spec.name}: up to date")
    return actions


def require_topic(cfg: KafkaSettings, topic: str, timeout_s: float = 10.0) -> int:
    """Return the topic's partition count, or raise TopicMissing with the fix.

    With ``cfg.topic_wait_s`` set, a missing topic is waited for that long first (in a Helm
    install the topics Job creates them once the services are up).
    """
    admin = admin_client(cfg)

    def partitions() -> int:
        # Listing all topics, not asking for this one: a broker may auto-create a topic asked for.
        meta = admin.list_topics(timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicMissing(
                f"topic {topic!r} does not exist on {cfg.bootstrap_servers}; "
                "create it with `marketpipe topics`"
            )
        return len(meta.partitions)

    if cfg.topic_wait_s <= 0:
        return partitions()
    log.info("waiting up to %gs for topic %s", cfg.topic_wait_s, topic)
    try:
        return wait_for(f"topic {topic!r}", partitions, cfg.topic_wait_s, max_interval_s=5.0)
    except DependencyUnavailable as exc:
        raise TopicMissing(str(exc)) from None
