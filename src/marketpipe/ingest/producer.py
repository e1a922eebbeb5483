"""The synthetic producer service: pace -> generate -> inject faults -> encode -> publish."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from marketpipe.contracts import TickColumns
from marketpipe.ingest.faults import corrupt_columns, interleave
from marketpipe.ingest.pacing import schedule
from marketpipe.ingest.synthetic import (
    ResumePoint,
    SyntheticMarket,
    TickBatch,
    specs_from_settings,
)
from marketpipe.kafka import DeliveryReport, Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import ProducerSettings

log = logging.getLogger(__name__)

BEHIND_WARNING_US = 1_000_000


@dataclass
class ProduceSummary:
    topic: str
    elapsed_s: float
    ticks: int = 0
    per_symbol: dict[str, int] = field(default_factory=dict)
    labels: Counter[str] = field(default_factory=Counter)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    stopped_by: str = "done"
    unsent: int = 0  # generated, never handed to the broker (stopped while it was away)

    @property
    def messages(self) -> int:
        return sum(self.labels.values())

    def lines(self) -> list[str]:
        rate = self.messages / self.elapsed_s if self.elapsed_s else 0.0
        d = self.delivery
        out = [
            f"topic {self.topic}: {self.ticks} ticks over {len(self.per_symbol)} symbols, "
            f"{self.messages} messages in {self.elapsed_s:.2f}s ({rate:,.0f} msg/s), "
            f"stopped by {self.stopped_by}",
            *d.lines(),
        ]
        if self.unsent:
            out.append(f"not sent: {self.unsent} messages of the last batch (stopped first)")
        injected = {k: v for k, v in sorted(self.labels.items()) if k != "good"}
        if injected:
            out.append("injected faults: " + ", ".join(f"{k}={v}" for k, v in injected.items()))
        return out


class SyntheticProducer:
    """Runs until ``count`` ticks, ``duration_s`` seconds or a stop signal, whichever is first."""

    def __init__(
        self,
        cfg: ProducerSettings,
        publisher: Publisher,
        topic: str,
        resume_from: dict[str, ResumePoint] | None = None,
    ) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.topic = topic
        # Independent streams for prices, faults and jitter, all reproducible from one seed.
        market_seed, fault_seed, jitter_seed = np.random.SeedSequence(cfg.seed).spawn(3)
        self.market = SyntheticMarket(
            specs_from_settings(cfg), seed=int(market_seed.generate_state(1)[0])
        )
        self.fault_rng = np.random.default_rng(fault_seed)
        self.pacer = schedule(
            cfg.tps,
            cfg.jitter_ms,
            cfg.batch_size,
            np.random.default_rng(jitter_seed),
            history_s=cfg.history_s,
            history_tps=cfg.history_tps,
        )
        self._keys = [name.encode() for name in self.market.names]
        self.market.resume(resume_from or {})

    def encode(self, batch: TickBatch) -> tuple[list[bytes], list[bytes], list[str], list[int]]:
        """Corrupt, encode and interleave one batch into (keys, values, labels, timestamps_ms)."""
        labels = corrupt_columns(batch, self.cfg.faults, self.fault_rng)
        sym = batch.symbol_index.tolist()
        names = self.market.names
        values = TickColumns(
            symbol=[names[i] for i in sym],
            event_time=batch.event_time.tolist(),
            seq=batch.seq.tolist(),
            price=batch.price.tolist(),
            size=batch.size.tolist(),
            bid=batch.bid.tolist(),
            ask=batch.ask.tolist(),
            bid_size=batch.bid_size.tolist(),
            ask_size=batch.ask_size.tolist(),
            source=self.cfg.source,
            received_at=time.time_ns() // 1000,  # generated = received, for a synthetic feed
        ).encode()
        keys = [self._keys[i] for i in sym]
        stamps = (batch.event_time // 1000).tolist()
        keys, values, label_list, stamps = interleave(
            keys, values, labels, stamps, self.cfg.faults, self.fault_rng
        )
        return keys, values, label_list, stamps

    def run(self, stop: StopFlag) -> ProduceSummary:
        cfg = self.cfg
        summary = ProduceSummary(topic=self.topic, elapsed_s=0.0)
        per_symbol = np.zeros(len(self.market.names), dtype=np.int64)
        started = time.monotonic()
        deadline = started + cfg.duration_s if cfg.duration_s else None
        next_warning = 0.0
        while True:
            if stop.is_set():
                summary.stopped_by = stop.signal_name or "stop"
                break
            if cfg.count is not None and summary.ticks >= cfg.count:
                summary.stopped_by = "count"
                break
            if deadline is not None and time.monotonic() >= deadline:
                summary.stopped_by = "duration"
                break
            limit = cfg.count - summary.ticks if cfg.count is not None else None
            batch = self.market.generate(self.pacer.next_times(limit))
            keys, values, labels, stamps = self.encode(batch)
            sent = self.publisher.publish(self.topic, keys, values, stamps)
            summary.ticks += len(batch)
            summary.labels.update(labels[:sent])
            if sent < len(values):  # stopped or gave up while the broker was unavailable
                summary.unsent = len(values) - sent
                summary.stopped_by = stop.signal_name or self.publisher.report.gave_up or "stop"
                break
            per_symbol += np.bincount(batch.symbol_index, minlength=len(per_symbol))
            if self.pacer.behind_us() > BEHIND_WARNING_US and time.monotonic() > next_warning:
                log.warning(
                    "producer is %.1fs behind the %g tps schedule: the broker or this core "
                    "cannot keep up",
                    self.pacer.behind_us() / 1e6,
                    cfg.tps,
                )
                next_warning = time.monotonic() + 10.0
        summary.delivery = self.publisher.close()
        summary.elapsed_s = time.monotonic() - started
        summary.per_symbol = {
            name: int(c)
            for name, c in zip(self.market.names, per_symbol.tolist(), strict=True)
            if c
        }
        return summary
