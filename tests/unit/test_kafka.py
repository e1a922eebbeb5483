"""Kafka layer pieces that need no broker; broker behaviour is in tests/integration."""

from __future__ import annotations

import time

from confluent_kafka import Producer
from pydantic import SecretStr

from marketpipe.kafka import Publisher, pipeline_topics, producer_config
from marketpipe.kafka.publisher import drained
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


def test_a_drained_producer_counts_messages_not_callbacks_waiting() -> None:
    """``len(producer)`` counts callbacks waiting to be served too (error callbacks while
    nothing listens): taken for messages, they made a close report more failed than queued.
    Once they are served, a purged producer holds no message."""
    cfg = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    errors: list[str] = []
    producer = Producer({**producer_config(cfg), "error_cb": lambda e: errors.append(e.str())})
    producer.produce("t", b"v", b"k")
    producer.purge()
    producer.flush(1.0)  # the purged message's report
    deadline = time.monotonic() + 10
    while not len(producer) and time.monotonic() < deadline:
        time.sleep(0.1)  # the client retries the connection: its errors queue up
    assert len(producer) > 0
    assert drained(producer, 5.0) == 0
    assert errors  # served


def test_the_spark_connector_gets_the_same_secured_connection() -> None:
    from marketpipe.features.spark import python_source_options
    from marketpipe.kafka.config import java_client_options

    cfg = KafkaSettings(
        bootstrap_servers="b:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc", sasl_password=SecretStr('p"w\\x'), ssl_ca_location="/ca/ca.crt",
    )  # fmt: skip
    java = java_client_options(cfg)
    assert java["kafka.bootstrap.servers"] == "b:9093"
    assert java["kafka.security.protocol"] == "SASL_SSL"
    assert java["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="svc" password="p\\"w\\\\x";'
    )
    assert (java["kafka.ssl.truststore.type"], java["kafka.ssl.truststore.location"]) == (
        "PEM", "/ca/ca.crt",
    )  # fmt: skip
    python = python_source_options(cfg)
    assert python["topic"] == cfg.topic_valid
    assert python["security.protocol"] == "SASL_SSL"
    assert python["sasl.password"] == 'p"w\\x'
    assert python["ssl.ca.location"] == "/ca/ca.crt"
    plain = java_client_options(KafkaSettings())
    assert set(plain) == {"kafka.bootstrap.servers", "kafka.security.protocol"}
