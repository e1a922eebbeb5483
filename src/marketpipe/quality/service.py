"""``marketpipe quality``: consume ticks.raw, route each message to ticks.valid or ticks.dlq.

Per batch: check every message, produce it (same key, same bytes, same headers) to the valid
topic or to the DLQ with reason headers, write the touched symbols' state to the changelog,
then commit output, state and input offsets together (exactly once) or flush and commit offsets
(at least once). A batch that fails to commit is aborted, the consumer rewinds to the committed
offsets and the state is reloaded, so the batch is processed again from the same starting point.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from marketpipe.kafka import consumer_config, read_to_end
from marketpipe.kafka.transactions import BatchAborted, TransactionalOutput
from marketpipe.quality.checker import CheckCounts, Checker
from marketpipe.quality.rules import Thresholds
from marketpipe.quality.state import StateStore
from marketpipe.runtime import StopFlag
from marketpipe.settings import KafkaSettings, QualitySettings
from marketpipe.telemetry import QualityInstruments
from marketpipe.topicstats import REASONS_HEADER

log = logging.getLogger(__name__)

LAG_EVERY_S = 5.0
# How often the checker says it still has no partitions (it consumes nothing meanwhile).
JOIN_WARN_EVERY_S = 30.0
RESTORE_TIMEOUT_S = 90.0

# DLQ headers (original headers are kept in front of them).
H_REASONS = REASONS_HEADER
H_DETAIL = "mp.detail"
H_TOPIC = "mp.source.topic"
H_PARTITION = "mp.source.partition"
H_OFFSET = "mp.source.offset"


def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass
class QualityReport:
    consumed: int = 0
    counts: CheckCounts = field(default_factory=CheckCounts)
    batches: int = 0
    aborted_batches: int = 0
    restored_states: int = 0
    lag: int | None = None
    elapsed_s: float = 0.0
    stopped_by: str = "done"

    @property
    def balanced(self) -> bool:
        return self.consumed == self.counts.valid + self.counts.dlq

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
        if self.lag is not None:
            out.append(f"consumer lag at exit: {self.lag}")
        return out


class QualityService:
    def __init__(
        self,
        kafka: KafkaSettings,
        cfg: QualitySettings,
        instruments: QualityInstruments | None = None,
        clock_us: Callable[[], int] = wall_clock_us,
    ) -> None:
        self.kafka = kafka
        self.cfg = cfg
        self.instruments = instruments
        self.clock_us = clock_us
        self.store = StateStore()
        self.checker = Checker(Thresholds(cfg), self.store)
        instance = cfg.instance_id or socket.gethostname()
        self.instance = instance
        self.output = TransactionalOutput(
            kafka, cfg.delivery, f"{cfg.group_id}-{instance}", cfg.transaction_timeout_ms
        )
        self.consumer = Consumer(
            consumer_config(
                kafka,
                cfg.group_id,
                **{
                    # Static membership: a restarted instance takes its partitions straight
                    # back instead of waiting for the group to notice the crash.
                    "group.instance.id": instance,
                    "enable.auto.commit": False,
                    "session.timeout.ms": cfg.session_timeout_ms,
                    "max.poll.interval.ms": cfg.max_poll_interval_ms,
                },
            )
        )
        self.report = QualityReport()
        self._assigned_at: float | None = None

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
        self._restore([tp.partition for tp in partitions])
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.store.drop(tp.partition)

    def _rewind(self) -> None:
        """After an aborted batch: back to the committed offsets, state as committed."""
        assignment = self.consumer.assignment()
        committed = self.consumer.committed(assignment, timeout=30)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = -2  # OFFSET_BEGINNING: nothing committed yet
            self.consumer.seek(tp)
        self._restore([tp.partition for tp in assignment])

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: StopFlag, idle_exit_s: float | None = None) -> QualityReport:
        cfg, topic = self.cfg, self.kafka.topic_raw
        started = time.monotonic()
        last_input = started
        next_lag = started + LAG_EVERY_S
        next_join_warning = started + JOIN_WARN_EVERY_S
        self.output.start()  # fences a crashed predecessor before its state is read
        self.consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not stop.is_set():
                msgs = self.consumer.consume(cfg.batch_size, cfg.poll_timeout_s)
                now = time.monotonic()
                if now >= next_lag:
                    self._sample_lag()
                    next_lag = now + LAG_EVERY_S
                if self._assigned_at is None and now >= next_join_warning:
                    self._warn_unassigned(now - started)
                    next_join_warning = now + JOIN_WARN_EVERY_S
                if not msgs:
                    # Idle counts from the first assignment: waiting to join is not idleness.
                    since = max(last_input, self._assigned_at or now)
                    if idle_exit_s is not None and self._assigned_at and now - since >= idle_exit_s:
                        self.report.stopped_by = f"idle {idle_exit_s:g}s"
                        break
                    continue
                last_input = now
                try:
                    self._process(msgs)
                except BatchAborted:
                    self.report.aborted_batches += 1
                    self._rewind()
        finally:
            self._sample_lag()
            self.output.close()
            self.consumer.close()
            self.report.elapsed_s = time.monotonic() - started
        if stop.is_set():
            self.report.stopped_by = stop.signal_name or "stop"
        return self.report

    def _warn_unassigned(self, waited_s: float) -> None:
        log.warning(
            "no partitions of %s assigned after %.0fs (group %s, instance %s): another member "
            "of the group holds them, e.g. a static member that stopped (brokers evict it only "
            "after its session timeout; some never do); give this checker a group of its own "
            "with MARKETPIPE_QUALITY__GROUP_ID or stop the other member",
            self.kafka.topic_raw, waited_s, self.cfg.group_id, self.instance,
        )  # fmt: skip

    def _process(self, msgs: list[Message]) -> None:
        produce = self.output.producer.produce
        poll = self.output.producer.poll
        now_us = self.clock_us()
        counts = CheckCounts()
        next_offsets: dict[tuple[str, int], int] = {}
        self.output.begin()
        try:
            consumed = self._route(msgs, counts, next_offsets, now_us)
            for partition, state_key, state_value in self.store.take_dirty():
                produce(self.kafka.topic_quality_state, state_value, state_key, partition=partition)
        except KafkaException as exc:
            self.output.fail(exc)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        self.output.commit(self.consumer, offsets)
        poll(0)
        self._account(consumed, counts)

    def _route(
        self,
        msgs: list[Message],
        counts: CheckCounts,
        next_offsets: dict[tuple[str, int], int],
        now_us: int,
    ) -> int:
        """Check and produce every message; returns how many were consumed."""
        valid_topic, dlq_topic = self.kafka.topic_valid, self.kafka.topic_dlq
        consumed = 0
        produce = self.output.producer.produce
        poll = self.output.producer.poll
        check = self.checker.check
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
            verdict = check(partition, key, value, now_us, counts)
            while True:
                try:
                    if verdict.ok:
                        if headers:
                            produce(valid_topic, value, key, headers=headers)
                        else:
                            produce(valid_topic, value, key)
                    else:
                        produce(
                            dlq_topic, value, key,
                            headers=[
                                *(headers or ()),
                                (H_REASONS, ",".join(verdict.reasons).encode()),
                                (H_DETAIL, verdict.detail.encode()[:2000]),
                                (H_TOPIC, topic.encode()),
                                (H_PARTITION, str(partition).encode()),
                                (H_OFFSET, str(offset).encode()),
                            ],
                        )  # fmt: skip
                    break
                except BufferError:
                    poll(0.05)
            next_offsets[(topic, partition)] = offset + 1
        return consumed

    def _account(self, consumed: int, counts: CheckCounts) -> None:
        """Only committed batches count, so the totals match what downstream can read."""
        self.report.consumed += consumed
        self.report.counts.merge(counts)
        self.report.batches += 1
        inst = self.instruments
        if inst is None:
            return
        inst.consumed.add(consumed)
        inst.valid.add(counts.valid)
        inst.dlq.add(counts.dlq)
        for reason, n in counts.reasons.items():
            inst.reasons.add(n, {"reason": reason})
        if counts.gap_ticks:
            inst.gaps.add(counts.gap_ticks)

    def _sample_lag(self) -> None:
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                return
            positions = self.consumer.position(assignment)
            lag = 0
            for tp in positions:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                if tp.offset >= 0:
                    lag += max(0, high - tp.offset)
            self.report.lag = lag
            if self.instruments is not None:
                self.instruments.lag.record(lag)
        except Exception as exc:  # lag is informative; never let it stop the service
            log.debug("lag sample failed: %s", exc)
