"""Thin typed wrappers over confluent-kafka: configs, a counting publisher, topics, reading.

Broker-agnostic on purpose: Redpanda in the cluster, any Kafka-API broker locally.
"""

from marketpipe.kafka.config import client_config, consumer_config, producer_config
from marketpipe.kafka.publisher import DeliveryReport, Publisher
from marketpipe.kafka.reader import read_to_end
from marketpipe.kafka.topics import (
    TopicMissing,
    TopicSpec,
    admin_client,
    ensure_topics,
    pipeline_topics,
    require_topic,
    wait_for_broker,
)

__all__ = [
    "DeliveryReport",
    "Publisher",
    "TopicMissing",
    "TopicSpec",
    "admin_client",
    "client_config",
    "consumer_config",
    "ensure_topics",
    "pipeline_topics",
    "producer_config",
    "read_to_end",
    "require_topic",
    "wait_for_broker",
]
