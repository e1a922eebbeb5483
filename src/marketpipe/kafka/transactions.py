"""Consume-transform-produce with Kafka transactions (exactly once) or without (at least once).

``TransactionalOutput`` drives one ``Publisher`` for a consuming service: in ``exactly_once``
mode every batch's output and its input offsets commit atomically (KIP-447 style: offsets are
sent with the consumer's group metadata); in ``at_least_once`` mode output is flushed, checked
for delivery failures, and only then are offsets committed.

Every client call has a timeout. A batch that cannot commit raises ``BatchAborted`` with the
delivery failures that caused it (the caller rewinds and redoes the batch, and can single out a
record that fails permanently). A fatal producer error (e.g. the broker lost the producer's
sequence state in a restart) rebuilds the producer and re-registers the transactional id; only
a fence by another instance (``Fenced``) stops the service.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from marketpipe.kafka.publisher import FENCED, Failure, ProducerFactory, Publisher, is_fatal
from marketpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

Delivery = Literal["exactly_once", "at_least_once"]


class BatchAborted(Exception):
    """The batch's output was not committed; the caller rewinds and processes it again."""

    def __init__(self, reason: str, failures: Sequence[Failure] = ()) -> None:
        super().__init__(reason)
        self.failures = list(failures)

    @property
    def permanent(self) -> list[Failure]:
        """Delivery failures that will recur however often the batch is redone."""
        return [f for f in self.failures if f.permanent]


class Fenced(Exception):
    """Another instance took over this transactional id; this one must stop."""


class Unavailable(Exception):
    """The broker did not answer a transactional call within the give-up time."""


class TransactionalOutput:
    def __init__(
        self,
        cfg: KafkaSettings,
        delivery: Delivery,
        transactional_id: str,
        transaction_timeout_ms: int = 30_000,
        factory: ProducerFactory = Producer,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.delivery = delivery
        self.cfg = cfg
        self.transactional_id = transactional_id
        self.stopping = stopping
        extra: dict[str, object] = {}
        if delivery == "exactly_once":
            extra["transaction.timeout.ms"] = transaction_timeout_ms
            # librdkafka wants message delivery to give up before the transaction does.
            extra["delivery.timeout.ms"] = min(cfg.delivery_timeout_ms, transaction_timeout_ms)
        self.publisher = Publisher(
            cfg,
            transactional_id=transactional_id if delivery == "exactly_once" else None,
            resend=False,
            extra_config=extra,
            factory=factory,
            stopping=stopping,
        )
        self._in_transaction = False
        self.rebuilds = 0

    @property
    def producer(self) -> Producer:
        """The current client (a rebuild replaces it: fetch it again per batch)."""
        return self.publisher.producer

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    def start(self) -> None:
        """Register the transactional id; fences (and aborts) a previous incarnation's open
        transaction, so its uncommitted output never becomes visible. Retries while the broker
        is unreachable, up to ``give_up_s``."""
        if not self.exactly_once:
            return
        deadline = time.monotonic() + self.cfg.give_up_s
        attempt = 0
        while True:
            attempt += 1
            try:
                self.producer.init_transactions(self.cfg.call_timeout_s)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() in FENCED:
                    raise Fenced(err.str()) from exc
                if time.monotonic() >= deadline or self.stopping():
                    raise Unavailable(
                        f"could not register transactional id {self.transactional_id} with the "
                        f"broker at {self.cfg.bootstrap_servers} within "
                        f"{self.cfg.give_up_s:g}s: {err.str()}"
                    ) from exc
                if is_fatal(err):
                    self._rebuild(err.str())
                log.warning(
                    "registering transactional id %s failed (attempt %d): %s; retrying",
                    self.transactional_id, attempt, err.str(),
                )  # fmt: skip
                time.sleep(min(self.cfg.retry_backoff_max_s, self.cfg.retry_backoff_s * attempt))

    def begin(self) -> None:
        self.publisher.take_failures()
        if not self.exactly_once:
            return
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            self.fail(exc)
        self._in_transaction = True

    def commit(self, consumer: Consumer, offsets: Sequence[TopicPartition]) -> None:
        """Make the batch's output visible and its input consumed, together."""
        timeout = self.cfg.call_timeout_s
        try:
            if self.exactly_once:
                self.producer.send_offsets_to_transaction(
                    list(offsets), consumer.consumer_group_metadata(), timeout
                )
                self.producer.commit_transaction(timeout)
                self._in_transaction = False
                return
            remaining = self.producer.flush(timeout)
            failures = self.publisher.take_failures()
            if remaining or failures:
                raise BatchAborted(
                    f"{remaining} unconfirmed, {len(failures)} failed: "
                    f"{[f.describe() for f in failures[:3]]}",
                    failures,
                )
            consumer.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:
            self.fail(exc)

    def abort(self) -> None:
        """Abort the open transaction; a client that cannot abort is rebuilt (which aborts it
        on the broker when the new one registers)."""
        if not (self.exactly_once and self._in_transaction):
            return
        try:
            self.producer.abort_transaction(self.cfg.call_timeout_s)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() in FENCED:
                raise Fenced(err.str()) from exc
            self._rebuild(f"abort failed: {err.str()}")
        self._in_transaction = False

    def close(self) -> None:
        with contextlib.suppress(Fenced):
            self.abort()
        try:
            self.producer.flush(min(self.cfg.call_timeout_s, 10.0))
        except KafkaException as exc:
            log.debug("flush at close: %s", exc)

    def fail(self, exc: KafkaException) -> None:
        """A Kafka error mid-batch: Fenced if another instance took over; otherwise abort (or
        rebuild the client after a fatal error) and raise BatchAborted for the caller to redo."""
        err: KafkaError = exc.args[0]
        if err.code() in FENCED:
            raise Fenced(err.str()) from exc
        self.poll_reports()
        failures = self.publisher.take_failures()
        if is_fatal(err):
            self._rebuild(err.str())
        else:
            log.warning("batch not committed (%s); aborting to redo it", err.str())
            self.abort()
        raise BatchAborted(err.str(), failures) from exc

    def poll_reports(self) -> None:
        """Serve delivery reports so failed messages are known."""
        try:
            self.producer.poll(0)
        except KafkaException as exc:
            if not is_fatal(exc.args[0]):
                raise

    def _rebuild(self, why: str) -> None:
        """A new client under the same transactional id (its registration fences the old
        epoch, whose open transaction the broker aborts)."""
        self.rebuilds += 1
        self.publisher.rebuild(why)  # what the old client held is redone by the caller
        self.publisher.take_failures()
        self._in_transaction = False
        self.start()
