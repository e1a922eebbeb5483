"""The live source: poll last trade and quote per symbol, publish each new trade once.

- A trade is new when its sequence number is above the last one published for that symbol, so
  polling faster than trades arrive never publishes a trade twice. ``seq`` on the wire is the
  provider's sequence number (increasing per symbol, with gaps: trades between two polls are not
  seen); it survives restarts, so a trade published again after a restart is a duplicate that
  the quality checker recognises by (symbol, source, seq).
- ``event_time`` is the trade's SIP timestamp; the quote is the latest NBBO at poll time. A trade
  with no quote gets a quote locked at the trade price (counted, as in the replay loader).
- Symbol metadata is cached for ``metadata_ttl_s``; a symbol the API does not know is skipped
  (and asked about again after the TTL); one failing symbol never stops the others.
- Every ``coverage_interval_s`` the trades published per minute are compared with the minute
  aggregates' trade counts: polling sees only a sample of the tape, and this says how much.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketpipe.contracts import TickColumns
from marketpipe.ingest.polygon import (
    ApiError,
    ApiUnavailable,
    AuthError,
    NotFound,
    PolygonClient,
    Quote,
    Trade,
)
from marketpipe.kafka import DeliveryReport, Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import LiveSettings

log = logging.getLogger(__name__)

MINUTE_US = 60_000_000


def append_trade(batch: TickColumns, trade: Trade, quote: Quote | None) -> bool:
    """Add ``trade`` with its prevailing ``quote`` and receipt time to ``batch`` (built with
    ``received_at=[]``); a trade with no quote gets one locked at its price. False when the
    quote was locked so (the callers count them)."""
    locked = quote is None
    q = Quote(trade.price, trade.price, None, None, trade.sip_ns) if quote is None else quote
    batch.symbol.append(trade.symbol)
    batch.event_time.append(trade.sip_ns // 1000)
    batch.seq.append(trade.sequence)
    batch.price.append(trade.price)
    batch.size.append(trade.size)
    batch.bid.append(q.bid)
    batch.ask.append(q.ask)
    batch.bid_size.append(q.bid_size)
    batch.ask_size.append(q.ask_size)
    assert isinstance(batch.received_at, list)
    batch.received_at.append(trade.received_us)
    return not locked


class Coverage:
    """Published trades per symbol and minute, against the minute aggregates' trade counts
    (``n``): the share of the tape a source saw, per closed minute."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._per_minute: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._clock = clock

    def saw(self, symbol: str, event_us: int) -> None:
        self._per_minute[symbol][event_us // MINUTE_US] += 1

    def check(self, client: PolygonClient) -> dict[str, float]:
        """Each symbol's share of the closed minutes' trades seen since the last check."""
        out: dict[str, float] = {}
        now_us = self._clock() * 1e6
        for symbol, minutes in self._per_minute.items():
            closed = sorted(m for m in minutes if (m + 1) * MINUTE_US <= now_us)
            if not closed:
                continue
            try:
                bars = client.minute_aggregates(
                    symbol, closed[0] * 60_000, (closed[-1] + 1) * 60_000 - 1
                )
            except ApiError as exc:
                log.info("%s: coverage check skipped: %s", symbol, exc)
                continue
            tape = sum(int(b.get("n", 0)) for b in bars)
            seen = sum(minutes.pop(m) for m in closed)
            if tape:
                out[symbol] = seen / tape
                log.info("%s: saw %d of %d trades (%.1f%%)", symbol, seen, tape, 100 * seen / tape)
        return out


@dataclass
class LiveSummary:
    topic: str
    polls: int = 0
    published: int = 0
    unchanged: int = 0
    locked_quotes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    unknown_symbols: set[str] = field(default_factory=set)
    coverage: dict[str, float] = field(default_factory=dict)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    elapsed_s: float = 0.0
    stopped_by: str = "done"

    def lines(self) -> list[str]:
        d = self.delivery
        out = [
            f"live: {self.polls} poll rounds in {self.elapsed_s:.1f}s, {self.published} trades "
            f"published to {self.topic}, {self.unchanged} polls without a new trade, "
            f"stopped by {self.stopped_by}",
            f"requests: {self.requests}, retries {self.retries}, rate-limited {self.rate_limited}",
            *d.lines(),
        ]
        if self.locked_quotes:
            out.append(
                f"trades without a quote (quote locked at trade price): {self.locked_quotes}"
            )
        if self.failures:
            out.append(
                "failed polls: " + ", ".join(f"{k}={v}" for k, v in sorted(self.failures.items()))
            )
        if self.unknown_symbols:
            out.append("unknown symbols (skipped): " + ", ".join(sorted(self.unknown_symbols)))
        for symbol, ratio in sorted(self.coverage.items()):
            out.append(f"coverage {symbol}: {ratio:.1%} of the tape's trades seen by polling")
        return out


class MetadataCache:
    """Ticker details per symbol for ``ttl_s``; remembers unknown symbols for as long."""

    def __init__(self, fetch: Callable[[str], dict[str, Any]], ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._fetch = fetch
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def get(self, symbol: str) -> dict[str, Any] | None:
        """Details, or None for a symbol the API does not know. API outages keep stale data."""
        now = self._clock()
        cached = self._entries.get(symbol)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            details: dict[str, Any] | None = self._fetch(symbol)
        except NotFound:
            details = None
        except ApiUnavailable:
            if cached is not None:
                return cached[1]
            raise
        self._entries[symbol] = (now, details)
        return details


class LiveSource:
    def __init__(
        self,
        cfg: LiveSettings,
        client: PolygonClient,
        publisher: Publisher,
        topic: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.publisher = publisher
        self.topic = topic
        self._clock = clock
        self.metadata = MetadataCache(client.ticker_details, cfg.metadata_ttl_s, clock)
        self._last_seq: dict[str, int] = {}
        self.coverage = Coverage()
        self._next_coverage = clock() + cfg.coverage_interval_s

    def poll_once(self, summary: LiveSummary) -> None:
        """One round over every symbol; publishes what is new."""
        batch = TickColumns(source=self.cfg.source, received_at=[])
        for symbol in self.cfg.symbols:
            try:
                if self.metadata.get(symbol) is None:
                    if symbol not in summary.unknown_symbols:
                        log.warning("%s: unknown to %s, skipping it", symbol, self.cfg.base_url)
                    summary.unknown_symbols.add(symbol)
                    continue
                summary.unknown_symbols.discard(symbol)
                trade = self.client.last_trade(symbol)
                if trade is None or trade.sequence <= self._last_seq.get(symbol, -1):
                    summary.unchanged += 1
                    continue
                quote = self.client.last_quote(symbol)
            except NotFound:
                summary.unknown_symbols.add(symbol)
                continue
            except AuthError:
                raise  # a refused key fails every symbol: stop and say so
            except ApiError as exc:
                summary.failures[symbol] += 1
                log.warning("%s: poll failed: %s", symbol, exc)
                continue
            self._add(batch, trade, quote, summary)
        if len(batch):
            # Kafka timestamp = publish time, as for replays: a provider's timestamp that lags
            # (a delayed feed, a test) must not send ticks straight to time-based retention.
            sent = self.publisher.publish(self.topic, batch.keys(), batch.encode())
            summary.published += sent
            if sent < len(batch):
                log.warning("stopped before %d trades were sent", len(batch) - sent)
        summary.polls += 1

    def _add(
        self, batch: TickColumns, trade: Trade, quote: Quote | None, summary: LiveSummary
    ) -> None:
        self._last_seq[trade.symbol] = trade.sequence
        self.coverage.saw(trade.symbol, trade.sip_ns // 1000)
        if not append_trade(batch, trade, quote):
            summary.locked_quotes += 1

    def check_coverage(self, summary: LiveSummary) -> None:
        summary.coverage.update(self.coverage.check(self.client))

    def run(self, stop: StopFlag) -> LiveSummary:
        summary = LiveSummary(topic=self.topic)
        started = self._clock()
        deadline = started + self.cfg.duration_s if self.cfg.duration_s else None
        try:
            while not stop.is_set():
                round_started = self._clock()
                self.poll_once(summary)
                if self.cfg.coverage_interval_s and self._clock() >= self._next_coverage:
                    self.check_coverage(summary)
                    self._next_coverage = self._clock() + self.cfg.coverage_interval_s
                if deadline is not None and self._clock() >= deadline:
                    summary.stopped_by = "duration"
                    break
                pause = self.cfg.poll_interval_s - (self._clock() - round_started)
                if pause > 0 and stop.wait(pause):
                    break
        finally:
            summary.delivery = self.publisher.close()
            stats = self.client.stats
            summary.requests, summary.retries = stats.requests, stats.retries
            summary.rate_limited = stats.rate_limited
            summary.elapsed_s = self._clock() - started
        if stop.is_set():
            summary.stopped_by = stop.signal_name or "stop"
        return summary
