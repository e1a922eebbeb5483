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
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from marketpipe.kafka.publisher import (
    FENCED,
    Failure,
    ProducerFactory,
    Publisher,
    is_fatal,
    kafka_error,
)
from marketpipe.retry import Backoff
from marketpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

Delivery = Literal["exactly_once", "at_least_once"]
#: How long past its own timeout a client call may take before it is abandoned.
CALL_GRACE_S = 5.0
#: How long a call in progress may go on once the stage is stopping.
STOP_GRACE_S = 5.0


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


class _Wedged(Exception):
    """A client call did not return within its timeout plus grace (the client is abandoned)."""


T = TypeVar("T")


def bounded(call: Callable[[], T], timeout_s: float, stopping: Callable[[], bool]) -> T:
    """Run a blocking client call in a worker thread and wait at most ``timeout_s``.

    librdkafka's transactional calls take a timeout, but after a broker restart
    ``send_offsets_to_transaction`` was seen blocking for minutes past it, in C, where no
    signal reaches Python: the checker then ignored SIGTERM. Waiting here instead keeps the
    process answering; a call that does not return raises ``_Wedged`` and its client is
    abandoned (the worker is a daemon thread) and replaced.
    """
    done = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=work, name="kafka-call", daemon=True).start()
    deadline = time.monotonic() + timeout_s + CALL_GRACE_S
    stop_deadline: float | None = None
    while not done.wait(0.2):
        now = time.monotonic()
        if now >= deadline:
            raise _Wedged(f"no answer within {timeout_s:g}s")
        if stop_deadline is None and stopping():
            # A healthy call ends in milliseconds: give it a moment before walking away.
            stop_deadline = now + min(timeout_s, STOP_GRACE_S)
        if stop_deadline is not None and now >= stop_deadline:
            raise _Wedged("stopped while waiting for the broker; the outcome is unknown")
    ok, result = outcome[0]
    if not ok:
        raise result
    return cast(T, result)


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

    @property
    def rebuilds(self) -> int:
        """How often the client was replaced (rebuilt after a fatal error, or abandoned)."""
        return self.publisher.report.rebuilds

    @property
    def producer(self) -> Producer:
        """The current client (a rebuild replaces it: fetch it again per batch)."""
        return self.publisher.producer

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    def start(self) -> None:
        """Register the transactional id; fences (and aborts) a previous incarnation's open
        transaction, so its uncommitted output never becomes visible. Retries with backoff
        while the broker is unreachable, up to ``give_up_s``; returns early when stopping."""
        if not self.exactly_once:
            return
        deadline = time.monotonic() + self.cfg.give_up_s
        backoff = Backoff(self.cfg.retry_backoff_s, self.cfg.retry_backoff_max_s)
        attempt = 0
        while not self.stopping():
            attempt += 1
            try:
                self._call(partial(self.producer.init_transactions, self.cfg.call_timeout_s))
                return
            except _Wedged as exc:
                why = f"init_transactions: {exc}"
                if not self.stopping():
                    self.publisher.abandon(why)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() in FENCED:
                    raise Fenced(err.str()) from exc
                why = err.str()
                if is_fatal(err):
                    self.publisher.rebuild(why)
            if self.stopping():
                return
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"could not register transactional id {self.transactional_id} with the "
                    f"broker at {self.cfg.bootstrap_servers} within {self.cfg.give_up_s:g}s "
                    f"(MARKETPIPE_KAFKA__GIVE_UP_S): {why}"
                )
            delay = backoff.ceiling(attempt)
            log.warning(
                "registering transactional id %s failed (attempt %d): %s; retrying in %.1fs",
                self.transactional_id, attempt, why, delay,
            )  # fmt: skip
            self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the stage is stopping."""
        end = time.monotonic() + seconds
        while not self.stopping() and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

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
        producer = self.producer
        try:
            if self.exactly_once:
                metadata = consumer.consumer_group_metadata()
                self._call(
                    lambda: producer.send_offsets_to_transaction(list(offsets), metadata, timeout)
                )
                self._commit_transaction(producer)
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
            # A synchronous commit has no timeout of its own: bound it like the others.
            done = bounded(
                lambda: consumer.commit(offsets=list(offsets), asynchronous=False),
                timeout, self.stopping,
            )  # fmt: skip
            failed = [tp for tp in done or [] if tp.error is not None]
            if failed:
                raise BatchAborted(f"offsets not committed: {failed[0].error}")
        except KafkaException as exc:
            self.fail(exc)
        except SystemError as exc:  # a fatal error surfaced in a delivery callback
            if (err := kafka_error(exc) or self.publisher.fatal) is None:
                raise
            self.fail(KafkaException(err))
        except _Wedged as exc:
            self._abandon(f"commit: {exc}")

    def _call(self, call: Callable[[], object]) -> None:
        bounded(call, self.cfg.call_timeout_s, self.stopping)

    def _commit_transaction(self, producer: Producer) -> None:
        """commit_transaction, called again after a retriable error (librdkafka: on a timeout
        "the operation may continue in the background ... it is okay to call this function
        again"); aborting instead could undo a commit that was about to succeed."""
        deadline = time.monotonic() + self.cfg.call_timeout_s
        while True:
            remaining = max(1.0, deadline - time.monotonic())
            try:
                self._call(partial(producer.commit_transaction, remaining))
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                again = err.retriable() and not err.txn_requires_abort()
                if not again or time.monotonic() >= deadline or self.stopping():
                    raise
                log.warning("commit not confirmed yet (%s); asking again", err.str())

    def _abandon(self, why: str) -> None:
        """The client hangs in a call: leave it to its thread, register a new one (which fences
        the old epoch and aborts its open transaction on the broker), redo the batch."""
        self._in_transaction = False
        if self.stopping():  # no new client on the way out; the next run resolves it
            raise BatchAborted(f"commit outcome unknown: {why}")
        log.warning("producer wedged (%s); replacing it", why)
        self.publisher.abandon(why)
        self.start()
        raise BatchAborted(f"producer wedged: {why}")

    def abort(self) -> None:
        """Abort the open transaction; a client that cannot abort is rebuilt (which aborts it
        on the broker when the new one registers)."""
        if not (self.exactly_once and self._in_transaction):
            return
        producer = self.producer
        try:
            self._call(lambda: producer.abort_transaction(self.cfg.call_timeout_s))
        except _Wedged as exc:
            self._in_transaction = False
            self._abandon(f"abort: {exc}")
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() in FENCED:
                raise Fenced(err.str()) from exc
            self._rebuild(f"abort failed: {err.str()}")
        self._in_transaction = False

    def close(self) -> None:
        with contextlib.suppress(Fenced, BatchAborted):
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
            rebuilds = self.rebuilds
            self.abort()
            if failures and self.exactly_once and self.rebuilds == rebuilds:
                # A refused message leaves a hole in the idempotent sequence; librdkafka's
                # next transaction then fails on "skipped sequence numbers". A fresh
                # registration starts clean.
                self._rebuild(f"{len(failures)} messages refused")
        raise BatchAborted(err.str(), failures) from exc

    def poll_reports(self) -> None:
        """Serve delivery reports so failed messages are known."""
        try:
            self.producer.poll(0)
        except (KafkaException, SystemError) as exc:
            err = kafka_error(exc) or self.publisher.fatal
            if err is None or not is_fatal(err):
                raise

    def _rebuild(self, why: str) -> None:
        """A new client under the same transactional id (its registration fences the old
        epoch, whose open transaction the broker aborts)."""
        self.publisher.rebuild(why)  # what the old client held is redone by the caller
        self._in_transaction = False
        self.start()
