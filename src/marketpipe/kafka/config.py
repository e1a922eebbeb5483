"""librdkafka configuration built from KafkaSettings: one place for every client's properties."""

from __future__ import annotations

import logging
from typing import Any

from marketpipe.settings import KafkaSettings

LIBRDKAFKA_LOG = logging.getLogger("marketpipe.librdkafka")


def client_config(cfg: KafkaSettings) -> dict[str, Any]:
    """Connection properties shared by producers, consumers and admin clients."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": cfg.client_id,
        "security.protocol": cfg.security_protocol,
        # librdkafka's own log lines go through Python logging, not straight to stderr.
        "logger": LIBRDKAFKA_LOG,
    }
    if cfg.sasl_mechanism:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
        conf["sasl.username"] = cfg.sasl_username
        conf["sasl.password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else ""
    if cfg.ssl_ca_location:
        conf["ssl.ca.location"] = cfg.ssl_ca_location
    conf.update(cfg.extra_config)
    return conf


_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_client_options(cfg: KafkaSettings) -> dict[str, str]:
    """The same connection for a Java Kafka client (Spark's connector), as its ``kafka.``
    options: bootstrap, security protocol, SASL as a JAAS line, the CA as a PEM truststore.
    (``extra_config`` holds librdkafka properties and is not translated.)"""
    opts = {
        "kafka.bootstrap.servers": cfg.bootstrap_servers,
        "kafka.security.protocol": cfg.security_protocol,
    }
    if cfg.sasl_mechanism:
        password = cfg.sasl_password.get_secret_value() if cfg.sasl_password else ""
        opts["kafka.sasl.mechanism"] = cfg.sasl_mechanism
        opts["kafka.sasl.jaas.config"] = (
            f'{_JAAS_MODULES[cfg.sasl_mechanism]} required username="{_jaas(cfg.sasl_username)}" '
            f'password="{_jaas(password)}";'
        )
    if cfg.ssl_ca_location:
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = cfg.ssl_ca_location
    return opts


def _jaas(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')


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
