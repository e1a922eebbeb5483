"""Consume-transform-produce with Kafka transactions (exactly once) or without (at least once).

``TransactionalOutput`` wraps one producer for a consuming service: in ``exactly_once`` mode
every batch's output and its input offsets commit atomically (KIP-447 style: offsets are sent
with the consumer's group metadata); in ``at_least_once`` mode output is flushed, checked for
delivery failures, and only then are offsets committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from marketpipe.kafka.config import producer_config
from marketpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

Delivery = Literal["exactly_once", "at_least_once"]


class BatchAborted(Exception):
    """The batch's output was not committed; the caller rewinds and processes it again."""


class Fenced(Exception):
    """Another instance took over this transactional id; this one must stop."""


class TransactionalOutput:
    def __init__(
        self,
        cfg: KafkaSettings,
        delivery: Delivery,
        transactional_id: str,
        transaction_timeout_ms: int = 30_000,
    ) -> None:
        self.delivery = delivery
        conf = producer_config(cfg, transactional_id if delivery == "exactly_once" else None)
        conf["on_delivery"] = self._on_delivery
        conf["delivery.report.only.error"] = True
        if delivery == "exactly_once":
            conf["transaction.timeout.ms"] = transaction_timeout_ms
            # librdkafka wants message delivery to give up before the transaction does.
            conf["delivery.timeout.ms"] = min(conf["delivery.timeout.ms"], transaction_timeout_ms)
        self.producer = Producer(conf)
        self._failed: list[str] = []
        self._in_transaction = False

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def start(self, timeout_s: float = 60.0) -> None:
        """Register the transactional id; fences (and aborts) a previous incarnation's open
        transaction, so its uncommitted output never becomes visible."""
        if self.delivery == "exactly_once":
            self.producer.init_transactions(timeout_s)

    def begin(self) -> None:
        self._failed.clear()
        if self.delivery == "exactly_once":
            self.producer.begin_transaction()
            self._in_transaction = True

    def commit(self, consumer: Consumer, offsets: Sequence[TopicPartition]) -> None:
        """Make the batch's output visible and its input consumed, together."""
        try:
            if self.delivery == "exactly_once":
                self.producer.send_offsets_to_transaction(
                    list(offsets), consumer.consumer_group_metadata()
                )
                self.producer.commit_transaction()
                self._in_transaction = False
                return
            remaining = self.producer.flush(60)
            if remaining or self._failed:
                raise BatchAborted(
                    f"{remaining} unconfirmed, {len(self._failed)} failed: {self._failed[:3]}"
                )
            consumer.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:
            self.fail(exc)

    def abort(self) -> None:
        if self.delivery == "exactly_once" and self._in_transaction:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as exc:
                self._raise_if_fatal(exc)
            self._in_transaction = False

    def close(self) -> None:
        self.abort()
        self.producer.flush(30)

    def fail(self, exc: KafkaException) -> None:
        """A Kafka error mid-batch: raise Fenced if fatal, else abort and raise BatchAborted."""
        self._raise_if_fatal(exc)
        err: KafkaError = exc.args[0]
        log.warning("batch not committed (%s); aborting to reprocess it", err.str())
        self.abort()
        raise BatchAborted(err.str()) from exc

    @staticmethod
    def _raise_if_fatal(exc: KafkaException) -> None:
        err: KafkaError = exc.args[0]
        if err.fatal() or err.code() in (
            KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
        ):  # fmt: skip
            raise Fenced(err.str()) from exc
