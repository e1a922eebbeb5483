"""Kafka layer pieces that need no broker; broker behaviour is in tests/integration."""

from __future__ import annotations

from pydantic import SecretStr

from marketpipe.kafka import Publisher, pipeline_topics, producer_config
from marketpipe.local.process import free_port
from marketpipe.settings import KafkaSettings


def test_producer_is_idempotent_with_acks_all() -> None:
    conf = producer_config(KafkaSettings())
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"


def test_sasl_and_extra_config_reach_librdkafka() -> None:
    cfg = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password=SecretStr("p"),
        extra_config={"ssl.ca.location": "/ca.pem", "linger.ms": "50"},
    )
    conf = producer_config(cfg)
    assert conf["sasl.password"] == "p"
    assert conf["ssl.ca.location"] == "/ca.pem"
    assert conf["linger.ms"] == "50"  # explicit librdkafka overrides win


def test_pipeline_topics_follow_settings() -> None:
    specs = pipeline_topics(
        KafkaSettings(topic_raw="r", partitions=4, retention_ms=1000, dlq_retention_ms=-1)
    )
    assert [(s.name, s.partitions) for s in specs] == [
        ("r", 4),
        ("ticks.valid", 4),
        ("ticks.dlq", 4),
        ("ticks.quality.state", 4),  # partitioned like the raw topic it mirrors
    ]
    assert specs[3].config["cleanup.policy"] == "compact"
    assert specs[0].config["retention.ms"] == "1000"
    assert specs[2].config["retention.ms"] == "-1"


def test_undeliverable_messages_are_counted_not_lost() -> None:
    """Nothing listens on the port: every message must end up counted as failed."""
    cfg = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", delivery_timeout_ms=1500)
    publisher = Publisher(cfg)
    publisher.publish("t", [b"k"] * 50, [b"v"] * 50)
    report = publisher.close(timeout_s=10)
    assert report.queued == 50
    assert report.failed == 50
    assert report.delivered == 0
    assert report.pending == 0
    assert not report.ok
    assert report.errors
    assert report.first_errors
