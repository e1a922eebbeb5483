"""The one producer wrapper: delivery accounting, healing, dead letters.

Every stage that writes to Kafka goes through ``Publisher``. It

- counts every message it is handed until the broker acknowledges it or it is counted failed;
- tells permanent delivery errors (the record can never be written as it is: too large,
  invalid, not authorised) from transient ones (broker down, request timed out);
- heals: after a fatal error (librdkafka's idempotent producer cannot go on, e.g. the broker
  lost its sequence state in a restart) it builds a new client, the old one's unacknowledged
  messages handed back through their delivery reports. Sources (``resend=True``) send those
  again, and transient failures too; a transactional stage (``resend=False``) gets them as
  ``failures`` and redoes its batch instead;
- gives up only after ``give_up_s`` without progress, and says so once.

librdkafka (confluent-kafka INTRODUCTION.md, "Fatal errors"): after a fatal error the producer
instance is unusable and the application must create a new one. Messages the new client sends
again may already have been written by the old one (a purged in-flight request can have
reached the broker): sources then write a duplicate, which the quality checker's sequence rule
routes to the DLQ as ``duplicate``; the summary counts what was sent again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from marketpipe.kafka.config import producer_config
from marketpipe.kafka.deadletter import Header, as_list
from marketpipe.retry import Backoff
from marketpipe.runtime import Readiness
from marketpipe.settings import KafkaSettings
from marketpipe.telemetry import ProducerInstruments

log = logging.getLogger(__name__)

#: How many distinct delivery errors are kept verbatim for the summary.
MAX_KEPT_ERRORS = 5
#: How long a rebuild waits for the old client to hand back its queue.
DRAIN_S = 10.0
#: How long a stopping stage waits for acknowledgements before it purges and counts them.
STOP_FLUSH_S = 8.0
#: Messages waiting this long with none acknowledged make the stage not ready.
NOT_READY_AFTER_S = 10.0
READINESS_NAME = "producer"

#: Delivery errors after which the same record can never be written as it is.
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError._INVALID_ARG,
    }
)
# Authorisation errors are not in PERMANENT: they are about a topic, not a record (every
# record would fail), so they are retried until give-up, whose line names the error.
#: Errors that mean another producer with our transactional id took over.
FENCED = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    }
)

ProducerFactory = Callable[[dict[str, Any]], Producer]


#: What a client call can raise for a Kafka error (see ``kafka_error``).
CLIENT_ERRORS = (KafkaException, SystemError)


def drained(producer: Producer, timeout_s: float) -> int:
    """Serve ``producer``'s delivery reports and events until none is left or ``timeout_s``
    has passed; returns how many messages never reported. ``len(producer)`` also counts
    callbacks waiting to be served (an error callback: broker down, say), which ``flush``
    may leave behind: taken for messages, they made a close report more failed than queued
    (53 of 50, once in a test run)."""
    deadline = time.monotonic() + timeout_s
    while len(producer) and time.monotonic() < deadline:
        with contextlib.suppress(*CLIENT_ERRORS):  # a fatal error again; reports follow
            producer.poll(0.1)
    with contextlib.suppress(*CLIENT_ERRORS):
        producer.poll(0)  # what came in since: callbacks only, once the time is up
    return len(producer)


def kafka_error(exc: BaseException | None) -> KafkaError | None:
    """The KafkaError behind an exception out of a client call. confluent-kafka can raise a
    fatal error from poll/flush and run a delivery callback with it still pending; it then
    comes out as a SystemError caused by the KafkaException."""
    while exc is not None:
        if isinstance(exc, KafkaException):
            error: KafkaError = exc.args[0]
            return error
        exc = exc.__cause__ or exc.__context__
    return None


def is_permanent(err: KafkaError) -> bool:
    return err.code() in PERMANENT


def is_fatal(err: KafkaError) -> bool:
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


@dataclass(frozen=True, slots=True)
class Failure:
    """A message the broker did not take, with everything needed to send it again."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] | None
    timestamp_ms: int
    error: KafkaError

    @property
    def permanent(self) -> bool:
        return is_permanent(self.error)

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}] key={self.key!r}: {self.error.str()}"


@dataclass
class DeliveryReport:
    """What happened to everything handed to a Publisher.

    Only failures are reported back by librdkafka (``delivery.report.only.error``): a Python
    callback per acknowledged message would cost ~10% of producer throughput. So acknowledged
    counts are derived: queued minus failed minus still in flight (or waiting to be sent again).
    """

    queued: int = 0
    queued_bytes: int = 0
    failed: int = 0
    failed_bytes: int = 0
    in_flight: int = 0
    resent: int = 0
    rebuilds: int = 0
    gave_up: str | None = None
    errors: TallyCounter[str] = field(default_factory=TallyCounter)
    first_errors: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.queued - self.failed - self.in_flight

    @property
    def delivered_bytes(self) -> int:
        """Exact once nothing is in flight (after a flush)."""
        return self.queued_bytes - self.failed_bytes if not self.in_flight else 0

    @property
    def pending(self) -> int:
        """Queued but neither acknowledged nor failed (non-zero only before a flush ends)."""
        return self.in_flight

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.in_flight == 0

    def count_failed(self, failure: Failure) -> None:
        self.failed += 1
        self.failed_bytes += len(failure.value or b"")
        self.errors[failure.error.name()] += 1
        if len(self.first_errors) < MAX_KEPT_ERRORS:
            self.first_errors.append(failure.describe())
            log.error("delivery failed: %s", failure.describe())

    def lines(self) -> list[str]:
        """The summary lines every source prints: the totals, what healing took, the first
        errors verbatim."""
        out = [
            f"delivery: {self.delivered} acknowledged, {self.failed} failed, {self.pending} "
            f"unconfirmed, {self.delivered_bytes:,} bytes"
        ]
        if self.rebuilds or self.resent or self.gave_up:
            out.append(
                f"healing: producer rebuilt {self.rebuilds} times, {self.resent} messages sent "
                "again (a copy the broker already had reaches the DLQ as a duplicate, one it "
                "wrote after newer ones as out_of_order)"
                + (f"; gave up: {self.gave_up}" if self.gave_up else "")
            )
        out.extend(f"delivery error: {e}" for e in self.first_errors)
        return out


class Publisher:
    """A counting, self-healing producer (see the module docstring).

    ``stopping`` is asked while the publisher waits (a full queue, a backoff): when it says
    stop, ``publish`` returns what it queued so far. ``give_up`` is called once, with the
    reason, when nothing has been acknowledged for ``cfg.give_up_s`` while messages wait.
    """

    def __init__(
        self,
        cfg: KafkaSettings,
        instruments: ProducerInstruments | None = None,
        attributes: dict[str, str] | None = None,
        transactional_id: str | None = None,
        stats_interval_ms: int = 5_000,
        *,
        resend: bool | None = None,
        extra_config: dict[str, Any] | None = None,
        factory: ProducerFactory = Producer,
        stopping: Callable[[], bool] = lambda: False,
        give_up: Callable[[str], None] | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        conf = producer_config(cfg, transactional_id)
        conf.update(extra_config or {})
        conf["delivery.report.only.error"] = True
        if instruments is not None and stats_interval_ms:
            conf["statistics.interval.ms"] = stats_interval_ms
        self._conf = conf
        self._factory = factory
        self.resend = transactional_id is None if resend is None else resend
        self.report = DeliveryReport()
        self.failures: list[Failure] = []  # transient failures waiting (resend) or for the caller
        self._fatal: KafkaError | None = None
        self._instruments = instruments
        self._attributes = attributes or {}
        self._latencies_ms: list[float] = []
        self._reported = (0, 0, 0)  # delivered, delivered bytes, failed already counted
        self._bootstrap = cfg.bootstrap_servers
        self._backoff = Backoff(cfg.retry_backoff_s, cfg.retry_backoff_max_s)
        self.give_up_s = cfg.give_up_s
        self.stopping = stopping
        self._give_up = give_up
        self._readiness = readiness
        self._last_progress = time.monotonic()
        self._delivered_seen = 0
        self.producer = self._build()

    # -- the client ---------------------------------------------------------------------------
    def _build(self) -> Producer:
        conf = dict(self._conf)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        if "statistics.interval.ms" in conf:
            conf["stats_cb"] = self._on_stats
        return self._factory(conf)

    @property
    def fatal(self) -> KafkaError | None:
        """The fatal error this client met, until it is rebuilt."""
        return self._fatal

    def rebuild(self, why: str) -> list[Failure]:
        """Replace the client: the old one's queue comes back through delivery reports (its
        unacknowledged messages); returns them and every failure not yet handled."""
        old = self.producer
        self.report.rebuilds += 1
        queued = len(old)
        try:
            old.purge(True, True)
        except KafkaException as exc:
            log.debug("purge after a fatal error: %s", exc)
        lost = drained(old, DRAIN_S)
        self._fatal = None
        self.producer = self._build()
        handed_back, self.failures = self.failures, []
        # Reports of purged messages still in the queue come at once, those of requests in
        # flight (older: sent first) when their request ends: put the older ones first again,
        # or every key's messages would be written out of order.
        handed_back.sort(key=lambda f: f.error.code() == KafkaError._PURGE_QUEUE)
        log.warning(
            "producer rebuilt (%s; rebuild %d): %d messages were queued, %d came back to send "
            "again%s",
            why, self.report.rebuilds, queued, len(handed_back),
            f", {lost} did not come back and are counted failed" if lost else "",
        )  # fmt: skip
        if lost:  # never seen again: count them, the totals must still add up
            self.report.failed += lost
            self.report.errors["_LOST_IN_REBUILD"] += lost
        return handed_back

    def abandon(self, why: str) -> None:
        """Replace a client that hangs in a call, without touching it again (another thread
        is inside it). Its queue is not handed back: the caller redoes its batch."""
        self.report.rebuilds += 1
        self._fatal = None
        self.failures = []
        self.producer = self._build()
        log.warning("producer abandoned and rebuilt (%s; rebuild %d)", why, self.report.rebuilds)

    # -- callbacks (run inside poll/flush on this thread) ------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:  # not sent with delivery.report.only.error; kept for safety
            return
        try:
            self._record(err, msg)
        except SystemError as exc:
            # confluent-kafka raised a fatal error inside poll/flush and went on to run this
            # callback with it pending: the first call into the message surfaced it (and
            # cleared it). Note the fatal error and record the report, which must not be lost.
            fatal = kafka_error(exc)
            if fatal is not None and is_fatal(fatal):
                self._fatal = self._fatal or fatal
            try:
                self._record(err, msg)
            except SystemError:  # unreadable twice: still counted, never "acknowledged"
                self.report.failed += 1
                self.report.errors["_REPORT_UNREADABLE"] += 1

    def _record(self, err: KafkaError, msg: Message) -> None:
        ts_type, ts = msg.timestamp()
        failure = Failure(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=as_list(msg.headers()) or None,
            timestamp_ms=ts if ts_type and ts > 0 else 0,
            error=err,
        )
        self._file(failure)

    def _file(self, failure: Failure) -> None:
        """A source counts a permanent failure at once; everything else waits in
        ``failures`` (sent again by a source, redone in its batch by a transactional stage)."""
        if self.resend and failure.permanent:
            self.report.count_failed(failure)
        else:
            self.failures.append(failure)

    def _on_error(self, err: KafkaError) -> None:
        if is_fatal(err):
            self._fatal = err
            log.error("fatal producer error: %s", err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("no broker reachable at %s: %s", self._bootstrap, err.str())
        elif err.code() == KafkaError._TRANSPORT:
            log.debug("producer: %s", err.str())  # librdkafka's own log line says it already
        else:
            log.warning("producer: %s", err.str())

    def _note(self, exc: Exception) -> None:
        """An exception out of a client call: remember a fatal Kafka error, log a transient
        one (retried by the caller), re-raise anything that is not a Kafka error."""
        err = kafka_error(exc)
        if err is None and isinstance(exc, SystemError) and self._fatal is not None:
            return  # the call failed on the fatal error its callback already noted
        if err is None:
            raise exc
        if is_fatal(err):
            self._fatal = self._fatal or err
        else:  # the call is retried by the caller's next round; give-up decides when to stop
            log.warning("producer: %s", err.str())

    def _on_stats(self, stats_json: str) -> None:
        """Per broker: average time queued in the client plus the produce round trip (ms)."""
        stats = orjson.loads(stats_json)
        for broker in stats.get("brokers", {}).values():
            if broker.get("nodeid", -1) < 0 or not broker.get("rtt", {}).get("cnt"):
                continue
            total_us = sum(
                broker.get(window, {}).get("avg", 0)
                for window in ("int_latency", "outbuf_latency", "rtt")
            )
            self._latencies_ms.append(total_us / 1000.0)

    # -- producing ----------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.0) -> None:
        try:
            self.producer.poll(timeout_s)
        except CLIENT_ERRORS as exc:
            self._note(exc)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] | None = None,
        timestamp_ms: int = 0,
    ) -> bool:
        """Queue one message, waiting while the local queue is full; False when stopped (or
        the client turned fatal) before it was queued."""
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=list(headers or ()), timestamp=timestamp_ms
                )
                return True
            except BufferError:
                if not self._wait_for_room():
                    return False
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if is_fatal(err):
                    self._fatal = self._fatal or err
                    return False
                # Refused before it was queued (e.g. larger than message.max.bytes).
                self._file(Failure(topic, -1, key, value, list(headers or ()), timestamp_ms, err))
                return True

    def _wait_for_room(self) -> bool:
        """The queue is full: serve reports, heal, check for stop and give-up."""
        self.poll(0.05)
        self.heal()
        return not (self.stopping() or self.report.gave_up or self._fatal is not None)

    def publish(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        timestamps_ms: Sequence[int] | None = None,
    ) -> int:
        """Queue a batch; blocks (serving delivery reports, healing) while the local queue is
        full. Returns how many were queued: fewer only when stopped or given up."""
        stamps = timestamps_ms if timestamps_ms is not None else [0] * len(values)
        queued = queued_bytes = 0
        produce = self.producer.produce
        for key, value, ts in zip(keys, values, stamps, strict=True):
            try:
                produce(topic, value, key, timestamp=ts)
            except (BufferError, KafkaException):  # the slow path: wait, heal, or refuse
                if not self._send(topic, key, value, None, ts):
                    if self._fatal is None:
                        break  # stopped or given up
                    self.heal()
                    if not self._send(topic, key, value, None, ts):
                        break
                produce = self.producer.produce  # a rebuild replaces the client
            queued += 1
            queued_bytes += len(value)
        self.report.queued += queued
        self.report.queued_bytes += queued_bytes
        self.poll(0)
        self.heal()
        self.record_metrics()
        return queued

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] | None = None,
        timestamp_ms: int = 0,
    ) -> bool:
        """Queue one message (with headers); prefer ``publish`` for batches."""
        if not self._send(topic, key, value, headers, timestamp_ms):
            return False
        self.report.queued += 1
        self.report.queued_bytes += len(value or b"")
        return True

    # -- healing ------------------------------------------------------------------------------
    def heal(self) -> None:
        """Sources (``resend``): rebuild after a fatal error, send failed messages again, and
        give up after ``give_up_s`` without progress."""
        if not self.resend:
            return  # a transactional stage redoes its batch (TransactionalOutput rebuilds)
        if self._fatal is not None:
            self.failures = self.rebuild(self._fatal.str())
        if self.failures:
            self._resend()
        self._check_progress()

    def _resend(self) -> None:
        todo, self.failures = self.failures, []
        for i, f in enumerate(todo):
            if f.permanent:
                self.report.count_failed(f)
                continue
            try:
                self.producer.produce(
                    f.topic, f.value, f.key, headers=f.headers, timestamp=f.timestamp_ms
                )
                self.report.resent += 1
            except BufferError:
                self.failures.extend(todo[i:])  # the rest next round
                return
            except CLIENT_ERRORS as exc:
                err = kafka_error(exc)
                if err is not None and is_permanent(err):
                    self.report.count_failed(replace(f, error=err))
                    continue
                # Fatal (rebuilt next round) or transient (retried until give-up): keep all.
                self.failures.extend(todo[i:])
                self._note(exc)
                return

    def _check_progress(self) -> None:
        """Give up (once) after ``give_up_s`` with messages waiting and none acknowledged."""
        self.report.in_flight = len(self.producer) + len(self.failures)
        now = time.monotonic()
        delivered = self.report.delivered
        if delivered > self._delivered_seen or not self.report.in_flight:
            self._delivered_seen = delivered
            self._last_progress = now
            if self._readiness is not None:
                self._readiness.ready(READINESS_NAME)
            return
        stalled = now - self._last_progress
        if stalled >= NOT_READY_AFTER_S and self._readiness is not None:
            self._readiness.not_ready(
                READINESS_NAME,
                f"nothing acknowledged by {self._bootstrap} for {stalled:.0f}s+, retrying",
            )
        if stalled >= self.give_up_s and not self.report.gave_up:
            last = self.failures[-1].error.str() if self.failures else "no answer"
            reason = (
                f"nothing acknowledged by the broker at {self._bootstrap} for {stalled:.0f}s "
                f"with {self.report.in_flight} messages waiting (last error: {last})"
            )
            self.report.gave_up = reason
            log.error("giving up: %s", reason)
            if self._give_up is not None:
                self._give_up(reason)

    def take_failures(self) -> list[Failure]:
        """The failures since the last call (transactional use: the batch must be redone)."""
        taken, self.failures = self.failures, []
        return taken

    # -- metrics and shutdown -------------------------------------------------------------------
    def record_metrics(self) -> None:
        """Refresh the in-flight count and push changes to the instruments (once per batch)."""
        report = self.report
        report.in_flight = len(self.producer) + len(self.failures)
        inst = self._instruments
        if inst is None:
            return
        attrs = self._attributes
        delivered, failed = report.delivered, report.failed
        delivered_bytes = report.queued_bytes - report.failed_bytes
        last_delivered, last_bytes, last_failed = self._reported
        if delivered > last_delivered:
            inst.produced.add(delivered - last_delivered, attrs)
            # Bytes are counted when queued; the total is exact once nothing is in flight.
            inst.produced_bytes.add(max(0, delivered_bytes - last_bytes), attrs)
            last_bytes = max(last_bytes, delivered_bytes)
        if failed > last_failed:
            inst.delivery_errors.add(failed - last_failed, attrs)
        for latency in self._latencies_ms:
            inst.produce_latency.record(latency, attrs)
        self._latencies_ms.clear()
        self._reported = (max(delivered, last_delivered), last_bytes, failed)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for acknowledgements, healing meanwhile; return how many are still waiting."""
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                self.producer.flush(max(0.0, min(remaining, 1.0)))
            except CLIENT_ERRORS as exc:
                self._note(exc)
            before = len(self.failures)
            self.heal()
            self.record_metrics()
            if not self.report.in_flight or remaining <= 0 or self.report.gave_up:
                return self.report.in_flight
            if before and self.resend:  # resent: wait a little before the next round
                attempt += 1
                time.sleep(min(self._backoff.ceiling(attempt), max(0.0, remaining)))

    def close(self, timeout_s: float = 30.0) -> DeliveryReport:
        """Flush, then release the client. Anything unconfirmed by ``timeout_s`` is purged and
        so reported as failed: every queued message ends up either delivered or failed."""
        if self.report.gave_up or self.stopping():
            # Stopping (SIGTERM): the summary must print well inside the pod's grace period.
            timeout_s = min(timeout_s, STOP_FLUSH_S)
        remaining = self.flush(timeout_s)
        if remaining:
            log.error(
                "%d messages unacknowledged after %.0fs; purging them (counted as failed)",
                remaining,
                timeout_s,
            )
            self.resend = False
            try:
                self.producer.purge()
            except CLIENT_ERRORS as exc:
                log.debug("purge at close: %s", exc)
            lost = drained(self.producer, 5.0)
            for f in self.take_failures():
                self.report.count_failed(f)
            if lost:
                self.report.failed += lost
                self.report.errors["_UNCONFIRMED_AT_CLOSE"] += lost
            self.record_metrics()
            self.report.in_flight = 0
        return self.report
