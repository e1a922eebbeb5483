"""An idempotent producer that counts every message until the broker acknowledges it."""

from __future__ import annotations

import logging
from collections import Counter as TallyCounter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from confluent_kafka import KafkaError, Message, Producer

from marketpipe.kafka.config import producer_config
from marketpipe.settings import KafkaSettings
from marketpipe.telemetry import ProducerInstruments

log = logging.getLogger(__name__)

#: How many distinct delivery errors are kept verbatim for the summary.
MAX_KEPT_ERRORS = 5


@dataclass
class DeliveryReport:
    """What happened to everything handed to a Publisher.

    Only failures are reported back by librdkafka (``delivery.report.only.error``): a Python
    callback per acknowledged message would cost ~10% of producer throughput. So acknowledged
    counts are derived: queued minus failed minus still in flight.
    """

    queued: int = 0
    queued_bytes: int = 0
    failed: int = 0
    failed_bytes: int = 0
    in_flight: int = 0
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


class Publisher:
    """An idempotent producer that accounts for every message it is handed.

    Produce latency comes from librdkafka's statistics (queueing + request round trip per
    broker), sampled every ``stats_interval_ms`` when instruments are attached.
    """

    def __init__(
        self,
        cfg: KafkaSettings,
        instruments: ProducerInstruments | None = None,
        attributes: dict[str, str] | None = None,
        transactional_id: str | None = None,
        stats_interval_ms: int = 5_000,
    ) -> None:
        conf = producer_config(cfg, transactional_id)
        conf["on_delivery"] = self._on_delivery
        conf["delivery.report.only.error"] = True
        conf["error_cb"] = self._on_error
        if instruments is not None and stats_interval_ms:
            conf["statistics.interval.ms"] = stats_interval_ms
            conf["stats_cb"] = self._on_stats
        self._producer = Producer(conf)
        self.report = DeliveryReport()
        self._instruments = instruments
        self._attributes = attributes or {}
        self._latencies_ms: list[float] = []
        self._reported = (0, 0, 0)  # delivered, delivered bytes, failed already counted
        self.fatal_error: str | None = None
        self._bootstrap = cfg.bootstrap_servers

    # -- callbacks (run inside poll/flush on this thread) ------------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:  # not sent with delivery.report.only.error; kept for safety
            return
        report = self.report
        report.failed += 1
        report.failed_bytes += len(msg)
        report.errors[err.name()] += 1
        if len(report.first_errors) < MAX_KEPT_ERRORS:
            text = f"{msg.topic()}[{msg.partition()}] key={msg.key()!r}: {err.str()}"
            report.first_errors.append(text)
            log.error("delivery failed: %s", text)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal_error = err.str()
            log.error("fatal producer error: %s", err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("no broker reachable at %s: %s", self._bootstrap, err.str())
        else:
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
    def publish(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        timestamps_ms: Sequence[int] | None = None,
    ) -> None:
        """Queue a batch; blocks (serving delivery reports) while the local queue is full."""
        producer = self._producer
        produce = producer.produce
        stamps = timestamps_ms if timestamps_ms is not None else [0] * len(values)
        for key, value, ts in zip(keys, values, stamps, strict=True):
            while True:
                try:
                    produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
        self.report.queued += len(values)
        self.report.queued_bytes += sum(map(len, values))
        producer.poll(0)
        self.record_metrics()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        """Queue one message (with headers); prefer ``publish`` for batches."""
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=list(headers or ()), timestamp=timestamp_ms
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self.report.queued += 1
        self.report.queued_bytes += len(value or b"")

    def record_metrics(self) -> None:
        """Refresh the in-flight count and push changes to the instruments (once per batch)."""
        report = self.report
        report.in_flight = len(self._producer)
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
        """Wait for acknowledgements; return how many messages are still in flight."""
        self._producer.flush(timeout_s)
        self.record_metrics()
        return self.report.in_flight

    def close(self, timeout_s: float = 30.0) -> DeliveryReport:
        """Flush, then release the client. Anything unconfirmed by ``timeout_s`` is purged and
        so reported as failed: every queued message ends up either delivered or failed."""
        remaining = self.flush(timeout_s)
        if remaining:
            log.error(
                "%d messages unacknowledged after %.0fs; purging them (counted as failed)",
                remaining,
                timeout_s,
            )
            self._producer.purge()
            self._producer.flush(5.0)
            self.record_metrics()
        self._producer.close()
        return self.report
