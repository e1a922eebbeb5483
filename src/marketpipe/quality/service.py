"""``marketpipe quality``: consume ticks.raw, route each message to ticks.valid or ticks.dlq.

Per batch: check every message, produce it (same key, same bytes, same headers) to the valid
topic or to the DLQ with reason headers, write the touched symbols' state to the changelog,
then commit output, state and input offsets together (exactly once) or flush and commit offsets
(at least once). A batch that fails to commit is aborted, the consumer rewinds to the committed
offsets and the state is reloaded, so the batch is processed again from the same starting point.

It heals instead of dying:

- a broker restart: every client call has a timeout; a failed batch is redone with backoff; a
  fatal producer error rebuilds the producer (``TransactionalOutput``), a fatal consumer error
  the consumer; only a fence by another live instance, or ``give_up_s`` without a commit while
  input waits, stops it (one line, exit code by the CLI);
- a record that can never be forwarded (the broker refuses it for good, e.g. too large for the
  topic): the batch that failed is redone one record per transaction, which singles the record
  out, and it goes to the DLQ in a degraded form that always fits (``kafka.deadletter``);
- honest accounting: only committed batches count; the lag is the end offset minus the
  committed offset per partition, read at exit, or said to be unknown.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from marketpipe.kafka import TopicMissing, consumer_config, read_to_end
from marketpipe.kafka.deadletter import (
    H_DETAIL,
    H_OFFSET,
    H_PARTITION,
    H_REASONS,
    H_TOPIC,
    MessageHeaders,
    Source,
    as_list,
    dead_letter,
)
from marketpipe.kafka.publisher import CLIENT_ERRORS, Failure, is_fatal, kafka_error
from marketpipe.kafka.transactions import BatchAborted, Fenced, TransactionalOutput, Unavailable
from marketpipe.lag import LagTrend
from marketpipe.quality.checker import CheckCounts, Checker
from marketpipe.quality.rules import TOO_LARGE, Thresholds
from marketpipe.quality.state import StateStore
from marketpipe.retry import Backoff
from marketpipe.runtime import Readiness, StopFlag
from marketpipe.settings import KafkaSettings, QualitySettings
from marketpipe.telemetry import QualityInstruments

log = logging.getLogger(__name__)

__all__ = [
    "H_DETAIL", "H_OFFSET", "H_PARTITION", "H_REASONS", "H_TOPIC",
    "QualityReport", "QualityService", "Unavailable",
]  # fmt: skip

LAG_EVERY_S = 5.0
# How often the checker says it still has no partitions (it consumes nothing meanwhile).
JOIN_WARN_EVERY_S = 30.0
RESTORE_TIMEOUT_S = 90.0
#: A record the broker refused for good goes to the DLQ with at most this much of its value.
REFUSED_KEEP_BYTES = 1_024

ConsumerFactory = Callable[[dict[str, Any]], Consumer]
OutputFactory = Callable[
    [KafkaSettings, QualitySettings, str, Callable[[], bool]], TransactionalOutput
]
TopicPartitionKey = tuple[str, int]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def default_output(
    kafka: KafkaSettings, cfg: QualitySettings, transactional_id: str, stopping: Callable[[], bool]
) -> TransactionalOutput:
    return TransactionalOutput(
        kafka, cfg.delivery, transactional_id, cfg.transaction_timeout_ms, stopping=stopping
    )


def refused_reason(failure: Failure) -> str:
    """The DLQ reason of a record the broker will never take as it is."""
    if failure.error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        return TOO_LARGE
    return "refused_" + failure.error.name().lower().lstrip("_")


@dataclass
class QualityReport:
    consumed: int = 0
    counts: CheckCounts = field(default_factory=CheckCounts)
    batches: int = 0
    aborted_batches: int = 0
    isolated: int = 0  # records the broker refused for good, sent to the DLQ degraded
    restored_states: int = 0
    rebuilt_consumers: int = 0
    rebuilt_producers: int = 0
    lag: int | None = None
    lag_by_partition: dict[int, int] = field(default_factory=dict)
    lag_error: str | None = None
    uncommitted: int = 0  # consumed into a batch that was not committed when it stopped
    elapsed_s: float = 0.0
    stopped_by: str = "done"

    @property
    def balanced(self) -> bool:
        return self.consumed == self.counts.valid + self.counts.dlq

    @property
    def caught_up(self) -> bool:
        return self.lag == 0

    def lines(self) -> list[str]:
        c = self.counts
        rate = self.consumed / self.elapsed_s if self.elapsed_s else 0.0
        out = [
            f"quality: consumed {self.consumed} = valid {c.valid} + dlq {c.dlq}"
            f" ({'balanced' if self.balanced else 'NOT BALANCED'}) in {self.elapsed_s:.1f}s "
            f"({rate:,.0f}/s), {self.batches} batches committed, {self.aborted_batches} "
            f"aborted and redone, stopped by {self.stopped_by}",
        ]
        if c.reasons:
            out.append(
                "dlq reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(c.reasons.items()))
            )
        out.append(
            f"sequence: {c.gap_ticks} missing ticks in {c.gap_ranges} gaps, {c.late} late "
            f"arrivals filled gaps, {c.abandoned} given up"
        )
        if self.isolated or self.rebuilt_consumers or self.rebuilt_producers:
            out.append(
                f"healing: {self.isolated} records refused by the broker sent to the DLQ cut "
                f"down, producer rebuilt {self.rebuilt_producers} times, consumer "
                f"{self.rebuilt_consumers} times"
            )
        if self.uncommitted:
            out.append(f"not committed at exit (redone by the next run): {self.uncommitted}")
        if self.lag is not None:
            parts = ", ".join(f"p{p}={n}" for p, n in sorted(self.lag_by_partition.items()))
            out.append(
                f"lag at exit (end offset - committed offset): {self.lag}"
                + (f" ({parts})" if self.lag else "")
            )
        else:
            out.append(f"lag at exit: unknown ({self.lag_error or 'no partitions assigned'})")
        return out


class QualityService:
    """The checker's loop. Clients come from factories (defaults: real confluent-kafka
    clients) so tests can drive the healing; the settings say everything else."""

    def __init__(
        self,
        kafka: KafkaSettings,
        cfg: QualitySettings,
        instruments: QualityInstruments | None = None,
        clock_us: Callable[[], int] = wall_clock_us,
        consumer_factory: ConsumerFactory = Consumer,
        output_factory: OutputFactory = default_output,
        readiness: Readiness | None = None,
    ) -> None:
        self.kafka = kafka
        self.cfg = cfg
        self.instruments = instruments
        self.clock_us = clock_us
        self.store = StateStore()
        self.checker = Checker(Thresholds(cfg), self.store)
        instance = cfg.instance_id or socket.gethostname()
        self.instance = instance
        self._stop: StopFlag | None = None
        self.output = output_factory(kafka, cfg, f"{cfg.group_id}-{instance}", self._stopping)
        self._consumer_factory = consumer_factory
        self.readiness = readiness or Readiness()
        self.consumer = self._new_consumer()
        self.report = QualityReport()
        self._assigned_at: float | None = None
        self._needs_rewind = False
        self._backoff = Backoff(kafka.retry_backoff_s, kafka.retry_backoff_max_s)
        self._lag_trend = LagTrend()  # says so in the log when the checker falls behind
        self._aborts_in_row = 0
        self._last_commit = time.monotonic()
        self._in_batch = 0  # records of the batch being processed, until it commits
        self._batch: list[Message] = []
        # Poison isolation: after a batch failed for good, its records one per transaction
        # up to these offsets; records singled out, with the broker's refusal.
        self._isolate_until: dict[TopicPartitionKey, int] = {}
        self._refused: dict[tuple[str, int, int], Failure] = {}
        self._bare: set[tuple[str, int, int]] = set()  # refused even cut: headers alone

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _new_consumer(self) -> Consumer:
        return self._consumer_factory(
            consumer_config(
                self.kafka,
                self.cfg.group_id,
                **{
                    # Static membership: a restarted instance takes its partitions straight
                    # back instead of waiting for the group to notice the crash.
                    "group.instance.id": self.instance,
                    "enable.auto.commit": False,
                    "session.timeout.ms": self.cfg.session_timeout_ms,
                    "max.poll.interval.ms": self.cfg.max_poll_interval_ms,
                    "error_cb": self._on_consumer_error,
                },
            )
        )

    _consumer_fatal: str | None = None

    def _on_consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal consumer error: %s", err.str())
            self._consumer_fatal = err.str()
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("no broker reachable at %s: %s", self.kafka.bootstrap_servers, err.str())
        else:
            log.debug("consumer: %s", err.str())

    # -- assignment: state follows partitions ---------------------------------------------------
    def _restore(self, partitions: list[int]) -> None:
        for p in partitions:
            records = (
                (m.key(), m.value())
                for m in read_to_end(
                    self.kafka,
                    self.kafka.topic_quality_state,
                    timeout_s=RESTORE_TIMEOUT_S,
                    partitions=[p],
                )
                if m.key() and m.value()
            )
            n = self.store.load(p, records)  # type: ignore[arg-type]
            self.report.restored_states += n
            log.info("partition %d: restored state of %d symbols", p, n)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._restore([tp.partition for tp in partitions])
        except (KafkaException, TopicMissing, TimeoutError, OSError) as exc:
            # Raised out of consume() this would leave partitions without state: the main
            # loop rewinds (offsets and state) with backoff before it processes anything.
            log.warning("state restore on assignment failed (%s); will retry", exc)
            self._needs_rewind = True
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.store.drop(tp.partition)

    def _rewind(self) -> None:
        """After an aborted batch: back to the committed offsets, state as committed."""
        assignment = self.consumer.assignment()
        committed = self.consumer.committed(assignment, timeout=self.kafka.call_timeout_s)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = -2  # OFFSET_BEGINNING: nothing committed yet
            self.consumer.seek(tp)
        self._restore([tp.partition for tp in assignment])

    def _recover(self, stop: StopFlag, why: str, attempt: int = 0) -> None:
        """Rewind (and rebuild a fatal consumer) until it works, with backoff from the
        ``attempt``-th try on; raises Unavailable after ``give_up_s`` without a commit."""
        while not stop.is_set():
            attempt += 1
            self._check_give_up(why)
            self.readiness.not_ready("checker", f"retrying: {why}"[:300])
            delay = self._backoff.ceiling(attempt - 1) if attempt > 1 else 0.0
            if delay:
                log.warning("quality: %s; retrying in %.1fs (attempt %d)", why, delay, attempt)
                if stop.wait(delay):
                    return
            try:
                if self._consumer_fatal:
                    self._rebuild_consumer()
                self._rewind()
                self._needs_rewind = False
                return
            except (KafkaException, TopicMissing, TimeoutError, OSError) as exc:
                why = f"rewind failed: {first_line(exc)}"

    def _rebuild_consumer(self) -> None:
        log.warning("consumer: fatal error (%s); building a new one", self._consumer_fatal)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("closing the failed consumer: %s", exc)
        self._consumer_fatal = None
        self.store = StateStore()
        self.checker.store = self.store
        self.consumer = self._new_consumer()
        self._subscribe()
        self.report.rebuilt_consumers += 1

    def _check_give_up(self, why: str) -> None:
        stalled = time.monotonic() - self._last_commit
        if stalled >= self.kafka.give_up_s:
            raise Unavailable(
                f"no batch committed for {stalled:.0f}s (broker at "
                f"{self.kafka.bootstrap_servers}): {why}; gave up after "
                f"MARKETPIPE_KAFKA__GIVE_UP_S={self.kafka.give_up_s:g}"
            )

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.kafka.topic_raw],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: StopFlag, idle_exit_s: float | None = None) -> QualityReport:
        cfg = self.cfg
        self._stop = stop
        started = time.monotonic()
        self._last_commit = started
        last_input = started
        next_lag = started + LAG_EVERY_S
        next_join_warning = started + JOIN_WARN_EVERY_S
        try:
            self.output.start()  # fences a crashed predecessor before its state is read
            self._subscribe()
            while not stop.is_set():
                if self._needs_rewind or self._consumer_fatal:
                    self._recover(stop, "the consumer or its state restore failed")
                    continue
                try:
                    msgs = self.consumer.consume(cfg.batch_size, cfg.poll_timeout_s)
                except KafkaException as exc:
                    self._consumer_fatal = self._consumer_fatal or first_line(exc)
                    continue
                now = time.monotonic()
                if now >= next_lag:
                    self._sample_lag()
                    next_lag = now + LAG_EVERY_S
                if self._assigned_at is None and now >= next_join_warning:
                    self._warn_unassigned(now - started)
                    next_join_warning = now + JOIN_WARN_EVERY_S
                if self._needs_rewind:
                    continue  # read before its partition's state was there: read again
                if not msgs:
                    self._last_commit = now  # nothing to do is not failing to commit
                    # Idle counts from the first assignment: waiting to join is not idleness.
                    since = max(last_input, self._assigned_at or now)
                    if idle_exit_s is not None and self._assigned_at and now - since >= idle_exit_s:
                        # Idle means caught up: nothing left (lag 0, the broker answering), not
                        # merely nothing arriving, which a broker outage looks like too.
                        self._sample_lag()
                        next_lag = now + LAG_EVERY_S
                        if self.report.lag == 0:
                            self.report.stopped_by = f"idle {idle_exit_s:g}s"
                            break
                        log.info(
                            "no input for %gs but not caught up (lag %s): waiting",
                            idle_exit_s, self.report.lag_error or self.report.lag,
                        )  # fmt: skip
                        last_input = now
                    continue
                last_input = now
                try:
                    if self._isolate_until:
                        self._process_isolated(msgs)
                    else:
                        self._process(msgs)
                    self._aborts_in_row = 0
                except BatchAborted as exc:
                    self._aborted(exc, stop)
                    last_input = time.monotonic()  # time spent recovering is not idleness
        except Unavailable:
            self.report.stopped_by = "give-up"
            raise
        except Fenced:
            self.report.stopped_by = "fenced"
            raise
        finally:
            self._finish()
            self.report.elapsed_s = time.monotonic() - started
        if stop.is_set():
            self.report.stopped_by = stop.signal_name or "stop"
        return self.report

    def _aborted(self, exc: BatchAborted, stop: StopFlag) -> None:
        """A batch did not commit: find a record the broker refuses for good, then rewind
        (with backoff when batches keep failing) and redo it."""
        self.report.aborted_batches += 1
        if self.instruments is not None:
            self.instruments.transactions.add(1, {"outcome": "aborted"})
        self._aborts_in_row += 1
        self.report.rebuilt_producers = self.output.rebuilds
        if stop.is_set():
            return  # stopping: the next run redoes it from the committed offsets
        # Only a refusal of a record's own output (not of the state changelog) is the record's.
        outputs = (self.kafka.topic_valid, self.kafka.topic_dlq)
        refused = [f for f in exc.permanent if f.topic in outputs]
        # The records of the transaction that failed (one, when isolating), not all consumed.
        data = [m for m in self._batch if m.error() is None and m.offset() is not None]
        if refused and len(data) == 1:
            m = data[0]
            key = (m.topic() or "", m.partition() or 0, m.offset() or 0)
            if key in self._bare:
                raise Unavailable(
                    f"{self.kafka.topic_dlq} refuses even a value-less dead letter "
                    f"({refused[0].error.str()}): check the topic's max.message.bytes and ACLs"
                )
            if key in self._refused:  # refused again, cut to 1 KiB: send headers alone
                self._bare.add(key)
            self._refused[key] = refused[0]
            log.warning(
                "%s[%d] offset %d: refused by the broker for good (%s); it goes to %s %s",
                key[0], key[1], key[2], refused[0].error.str(), self.kafka.topic_dlq,
                "without its value" if key in self._bare else "cut down",
            )  # fmt: skip
        elif refused:
            for m in data:
                tp = (m.topic() or "", m.partition() or 0)
                self._isolate_until[tp] = max(self._isolate_until.get(tp, -1), m.offset() or 0)
            log.warning(
                "batch of %d refused for good by the broker (%s): redoing it one record per "
                "transaction to single out the record",
                len(data), refused[0].describe(),
            )  # fmt: skip
        self._recover(stop, f"batch aborted: {exc}", attempt=self._aborts_in_row - 1)

    def _warn_unassigned(self, waited_s: float) -> None:
        log.warning(
            "no partitions of %s assigned after %.0fs (group %s, instance %s): another member "
            "of the group holds them, e.g. a static member that stopped (brokers evict it only "
            "after its session timeout; some never do); give this checker a group of its own "
            "with MARKETPIPE_QUALITY__GROUP_ID or stop the other member",
            self.kafka.topic_raw, waited_s, self.cfg.group_id, self.instance,
        )  # fmt: skip

    def _process_isolated(self, msgs: list[Message]) -> None:
        """One record per transaction until every isolated partition is past the batch that
        failed; a refusal then names its record (``_aborted``)."""
        for msg in msgs:
            tp = (msg.topic() or "", msg.partition() or 0)
            until = self._isolate_until.get(tp)
            offset = msg.offset()
            self._process([msg])
            if until is not None and offset is not None and offset >= until:
                del self._isolate_until[tp]
                log.info("%s[%d]: past the refused batch, back to whole batches", *tp)

    def _process(self, msgs: list[Message]) -> None:
        output = self.output
        now_us = self.clock_us()
        counts = CheckCounts()
        next_offsets: dict[TopicPartitionKey, int] = {}
        self._batch = msgs
        self._in_batch = len(msgs)
        output.begin()
        try:
            consumed, refused = self._route(msgs, counts, next_offsets, now_us)
            state_topic = self.kafka.topic_quality_state
            for partition, state_key, state_value in self.store.take_dirty():
                self._produce(state_topic, state_key, state_value, None, partition)
        except CLIENT_ERRORS as exc:
            if (err := kafka_error(exc) or output.publisher.fatal) is None:
                raise
            output.fail(KafkaException(err))
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        output.commit(self.consumer, offsets)
        self.readiness.ready("checker")
        self._last_commit = time.monotonic()
        self._in_batch = 0
        for key in refused:
            self._refused.pop(key, None)
            self._bare.discard(key)
        self.report.isolated += len(refused)
        self._account(consumed, counts)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: MessageHeaders,
        partition: int = -1,
    ) -> None:
        """The slow path of one produce: a full queue (served, stop-aware), or a refusal
        before the record was queued (a failure of the batch, as the broker's would be)."""
        producer = self.output.producer
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, headers=headers)
                return
            except BufferError:
                if self._stopping():
                    raise BatchAborted("stopped with the producer queue full") from None
                producer.poll(0.05)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if is_fatal(err):
                    raise
                failure = Failure(topic, partition, key, value, as_list(headers), 0, err)
                self.output.abort()
                raise BatchAborted(failure.describe(), [failure]) from exc

    def _route(
        self,
        msgs: list[Message],
        counts: CheckCounts,
        next_offsets: dict[TopicPartitionKey, int],
        now_us: int,
    ) -> tuple[int, list[tuple[str, int, int]]]:
        """Check and produce every message; returns how many were consumed and which
        refused records went to the DLQ cut down."""
        valid_topic, dlq_topic = self.kafka.topic_valid, self.kafka.topic_dlq
        consumed = 0
        refused_sent: list[tuple[str, int, int]] = []
        produce = self.output.producer.produce
        check = self.checker.check
        dlq_cap = self.cfg.dlq_max_value_bytes
        refused_records = self._refused
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error (not a message, skipped): %s", err.str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue  # not a data message
            consumed += 1
            key, value, headers = msg.key(), msg.value(), msg.headers()
            next_offsets[(topic, partition)] = offset + 1
            source = Source(topic, partition, offset)
            if refused_records and (topic, partition, offset) in refused_records:
                failure = refused_records[(topic, partition, offset)]
                reason = refused_reason(failure)
                counts.dlq += 1
                counts.reasons[reason] += 1
                refused_sent.append((topic, partition, offset))
                bare = (topic, partition, offset) in self._bare
                dl_value, dl_headers = dead_letter(
                    value, headers, [reason], failure.error.str()[: 120 if bare else None],
                    source, 0 if bare else min(dlq_cap, REFUSED_KEEP_BYTES), keep_headers=not bare,
                )  # fmt: skip
                self._produce(dlq_topic, key, dl_value or None, dl_headers)
                continue
            verdict = check(partition, key, value, now_us, counts)
            try:
                if verdict.ok:
                    if headers:
                        produce(valid_topic, value, key, headers=headers)
                    else:
                        produce(valid_topic, value, key)
                    continue
                dl_value, dl_headers = dead_letter(
                    value, headers, verdict.reasons, verdict.detail, source, dlq_cap
                )
                produce(dlq_topic, dl_value, key, headers=dl_headers)
            except (BufferError, KafkaException):
                if verdict.ok:
                    self._produce(valid_topic, key, value, headers)
                else:
                    self._produce(dlq_topic, key, dl_value, dl_headers)
        return consumed, refused_sent

    def _account(self, consumed: int, counts: CheckCounts) -> None:
        """Only committed batches count, so the totals match what downstream can read."""
        self.report.consumed += consumed
        self.report.counts.merge(counts)
        self.report.batches += 1
        inst = self.instruments
        if inst is None:
            return
        inst.transactions.add(1, {"outcome": "committed"})
        inst.consumed.add(consumed)
        inst.valid.add(counts.valid)
        inst.dlq.add(counts.dlq)
        for reason, n in counts.reasons.items():
            inst.reasons.add(n, {"reason": reason})
        if counts.gap_ticks:
            inst.gaps.add(counts.gap_ticks)

    def _sample_lag(self) -> None:
        """Lag = end offset - committed offset, per assigned partition (what is really left
        to do: the position runs ahead of the commits inside a batch and after an abort)."""
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                self.report.lag, self.report.lag_error = None, "no partitions assigned"
                return
            timeout = min(5.0, self.kafka.call_timeout_s)
            committed = self.consumer.committed(assignment, timeout=timeout)
            by_partition: dict[int, int] = {}
            for tp in committed:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                done = tp.offset if tp.offset >= 0 else low
                by_partition[tp.partition] = max(0, high - done)
            self.report.lag = sum(by_partition.values())
            self.report.lag_by_partition = by_partition
            self.report.lag_error = None
            trend = self._lag_trend.observe(time.monotonic(), self.report.lag)
            if trend is not None:
                log.warning("quality checker %s", trend)
            if self.instruments is not None:
                for partition, lag in by_partition.items():
                    self.instruments.lag.set(lag, {"partition": str(partition)})
        except (KafkaException, RuntimeError) as exc:  # informative: never stops the service
            self.report.lag, self.report.lag_error = (
                None,
                f"broker did not answer: {first_line(exc)}",
            )
            log.debug("lag sample failed: %s", exc)

    def _finish(self) -> None:
        """On every way out: the honest lag, what was left uncommitted, clients closed."""
        self.report.uncommitted = self._in_batch
        self.report.rebuilt_producers = self.output.rebuilds
        self._sample_lag()
        try:
            self.output.close()
        except Exception as exc:  # closing must not hide why we stopped
            log.warning("closing the producer: %s", first_line(exc))
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", first_line(exc))
