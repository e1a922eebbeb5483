"""``marketpipe live --mode stream``: every trade of a Polygon.io-style WebSocket feed, with its
prevailing quote, published once; what a disconnect or a restart missed is filled from the
REST history.

The feed's messages (documented in docs/usage.md):

- ``{"action": "auth", "params": KEY}`` answered by ``[{"ev": "status", "status":
  "auth_success"}]`` (``auth_failed`` otherwise);
- ``{"action": "subscribe", "params": "T.AAPL,Q.AAPL,..."}`` answered per channel by
  ``{"ev": "status", "status": "success", "message": "subscribed to: T.AAPL"}``;
- trades ``{"ev": "T", "sym", "p" (price), "s" (size), "t" (SIP time, epoch ms), "q"
  (sequence number, increasing per symbol), "i" (trade id)}``;
- quotes ``{"ev": "Q", "sym", "bp", "bs", "ap", "as", "t"}``; a frame is a JSON list of these.

Missing nothing, twice nothing, in order per symbol:

1. Where each symbol stands comes from the topic itself (the newest tick of this source: its
   ``seq`` and event time), so a restarted pod needs no state file.
2. On every connect: authenticate, subscribe and wait until the feed confirms every channel
   (assumed: from then on it sends this connection every trade), then *before reading the
   feed* fetch each symbol's trades after its newest published one from the history endpoint
   (paginated, under the client's rate limit and retries) and publish them in sequence order.
   The feed's frames queue meanwhile (those that came with the confirmations are held), so
   history and feed overlap rather than leave a hole.
3. Then the feed: a trade whose sequence number is not above the symbol's newest published one
   is a duplicate (the overlap, or the provider repeating itself) and is dropped, counted. The
   checker's duplicate rule stays as the backstop.
4. A lost connection (closed, timed out, refused) is retried with exponential backoff and full
   jitter, one log line per attempt, and step 2 fills what the outage missed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from marketpipe.contracts import TickColumns
from marketpipe.ingest.live import Coverage, append_trade
from marketpipe.ingest.polygon import (
    ApiUnavailable,
    AuthError,
    PolygonClient,
    Quote,
    Trade,
    optional_float,
)
from marketpipe.ingest.synthetic import ResumePoint
from marketpipe.kafka import DeliveryReport, Publisher
from marketpipe.retry import Backoff, first_line
from marketpipe.runtime import StopFlag
from marketpipe.settings import LiveSettings

log = logging.getLogger(__name__)

#: Trades published per batch (and at least every FLUSH_S seconds).
BATCH = 2_000
FLUSH_S = 0.1
#: How long a connect waits for the feed to accept the API key, and to confirm its
#: subscriptions before the gap-fill.
AUTH_WAIT_S = 10.0
SUBSCRIBE_WAIT_S = 5.0
SUBSCRIBED = "subscribed to:"  # the confirmation's message, then the channel(s)

Event = dict[str, Any]
#: Market events of one frame, with the time it arrived (epoch microseconds).
Frame = tuple[list[Event], int]


@dataclass
class StreamSummary:
    topic: str
    published: int = 0
    from_history: int = 0
    duplicates: int = 0
    quotes: int = 0
    locked_quotes: int = 0
    connects: int = 0
    disconnects: int = 0
    silences: int = 0  # gap-fills run because the feed went quiet while connected
    coverage: dict[str, float] = field(default_factory=dict)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    requests: int = 0
    rate_limited: int = 0
    elapsed_s: float = 0.0
    stopped_by: str = "done"

    def lines(self) -> list[str]:
        out = [
            f"live (stream): {self.published} trades published to {self.topic} in "
            f"{self.elapsed_s:.1f}s ({self.from_history} of them from the history after a "
            f"connect), {self.duplicates} duplicates dropped, {self.quotes} quotes, "
            f"stopped by {self.stopped_by}",
            f"connections: {self.connects}, lost {self.disconnects}, silent spells checked "
            f"against the history {self.silences}; history requests {self.requests}, "
            f"rate-limited {self.rate_limited}",
            *self.delivery.lines(),
        ]
        if self.locked_quotes:
            out.append(
                f"trades without a quote (quote locked at trade price): {self.locked_quotes}"
            )
        for symbol, ratio in sorted(self.coverage.items()):
            out.append(f"coverage {symbol}: {ratio:.1%} of the tape's trades published")
        return out


class FeedLost(Exception):
    """The connection to the feed ended; reconnect."""


Connect = Callable[..., Any]


def _connect(url: str) -> Any:
    from websockets.sync.client import connect

    # The library answers the server's pings and pings it (keepalive): a dead peer ends the
    # connection within ping_interval + ping_timeout.
    return connect(url, open_timeout=10, close_timeout=2, ping_interval=10, ping_timeout=10)


class StreamSource:
    def __init__(
        self,
        cfg: LiveSettings,
        client: PolygonClient,
        publisher: Publisher,
        topic: str,
        resume: dict[str, ResumePoint],
        connect: Connect = _connect,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.publisher = publisher
        self.topic = topic
        self._connect = connect
        self._clock = clock
        self._wall_ns = wall_clock_ns
        self._last_seq = {s: p.seq for s, p in resume.items()}
        self._last_ns = {s: p.event_time * 1000 for s, p in resume.items()}
        self._quotes: dict[str, Quote] = {}
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        self.coverage = Coverage()
        self._batch = TickColumns(source=cfg.source, received_at=[])
        self._flushed_at = clock()
        self._heard_at = clock()  # the feed's last market event (or the connect's gap-fill)
        self._filled_at = clock()  # the last gap-fill for a silence
        self.summary = StreamSummary(topic=topic)

    @property
    def published(self) -> int:
        """Trades handed to the publisher so far (while it runs, too)."""
        return self.summary.published

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> StreamSummary:
        self.summary = summary = StreamSummary(topic=self.topic)
        started = self._clock()
        deadline = started + self.cfg.duration_s if self.cfg.duration_s else None
        next_coverage = started + self.cfg.coverage_interval_s
        attempt = 0
        try:
            while not stop.is_set():
                try:
                    with self._connect(self.cfg.stream_url) as ws:
                        self._authenticate(ws)
                        held = self._subscribe(ws, stop)
                        if stop.is_set():
                            break
                        summary.connects += 1
                        self._gap_fill(summary, stop)
                        self._heard_at = self._clock()  # up to date: silence counts anew
                        for events, received_us in held:
                            self._handle(events, received_us, summary)
                        attempt = 0
                        while not stop.is_set():
                            if deadline is not None and self._clock() >= deadline:
                                summary.stopped_by = "duration"
                                return summary
                            self._read(ws, summary, stop)
                            self._check_silence(summary, stop)
                            if not self._flush(summary, stop):
                                return summary
                            if (self.cfg.coverage_interval_s
                                    and self._clock() >= next_coverage):  # fmt: skip
                                summary.coverage.update(self.coverage.check(self.client))
                                next_coverage = self._clock() + self.cfg.coverage_interval_s
                except Exception as exc:
                    if isinstance(exc, AuthError) or not (
                        _is_connection_error(exc) or isinstance(exc, ApiUnavailable)
                    ):  # the history's retries exhausted: try again with the next connect
                        raise
                    self._flush(summary, stop, force=True)
                    summary.disconnects += 1
                    attempt += 1
                    delay = self._backoff.delay(attempt)
                    log.warning("feed %s lost (%s): reconnecting in %.1fs (attempt %d)",
                                self.cfg.stream_url, first_line(exc), delay, attempt)  # fmt: skip
                    if stop.wait(delay):
                        break
        finally:
            self._flush(summary, stop, force=True)
            summary.delivery = self.publisher.close()
            stats = self.client.stats
            summary.requests, summary.rate_limited = stats.requests, stats.rate_limited
            summary.elapsed_s = self._clock() - started
            if stop.is_set():
                summary.stopped_by = stop.signal_name or "stop"
        return summary

    # -- protocol ------------------------------------------------------------------------------
    def _authenticate(self, ws: Any) -> None:
        key = self.cfg.api_key.get_secret_value() if self.cfg.api_key else ""
        ws.send(orjson.dumps({"action": "auth", "params": key}).decode())

        def answered(status: str, message: str) -> bool:
            if status == "auth_failed":
                raise AuthError(f"API key refused by {self.cfg.stream_url}")
            return status == "auth_success"

        if not self._await_status(ws, AUTH_WAIT_S, answered)[0]:
            raise FeedLost("no answer to the authentication")

    def _subscribe(self, ws: Any, stop: StopFlag) -> list[Frame]:
        """Subscribe, and wait until the feed confirms every channel: a gap-fill before that
        could miss a trade made after the history answered but before the feed sent this
        connection anything. Returns the market events that came meanwhile, to be handled after
        the gap-fill."""
        channels = [f"{kind}.{s}" for s in self.cfg.symbols for kind in ("T", "Q")]
        ws.send(orjson.dumps({"action": "subscribe", "params": ",".join(channels)}).decode())
        pending = set(channels)

        def answered(status: str, message: str) -> bool:
            if status == "success" and message.startswith(SUBSCRIBED):
                pending.difference_update(c.strip() for c in message[len(SUBSCRIBED) :].split(","))
            elif status not in ("connected", "auth_success"):
                log.warning("feed %s: %s %s", self.cfg.stream_url, status, message[:200])
            return not pending

        _, held = self._await_status(ws, SUBSCRIBE_WAIT_S, answered, stop)
        if pending and not stop.is_set():
            log.warning("feed %s confirmed %d of %d subscriptions within %.0fs (none for %s): "
                        "going on; a trade made until it starts sending may be missed",
                        self.cfg.stream_url, len(channels) - len(pending), len(channels),
                        SUBSCRIBE_WAIT_S, ", ".join(sorted(pending)[:5]))  # fmt: skip
        return held

    def _await_status(
        self, ws: Any, wait_s: float, answered: Callable[[str, str], bool],
        stop: StopFlag | None = None,
    ) -> tuple[bool, list[Frame]]:  # fmt: skip
        """Read frames until ``answered(status, message)`` is true of one of their status
        events (True), or ``wait_s`` has passed or ``stop`` is set (False). The market events
        read meanwhile come back with the time they arrived, to be handled later."""
        held: list[Frame] = []
        deadline = self._clock() + wait_s
        while not (stop and stop.is_set()) and (left := deadline - self._clock()) > 0:
            events = self._events(ws, timeout=min(left, 1.0))
            if market := [e for e in events if e.get("ev") != "status"]:
                held.append((market, self._wall_ns() // 1000))
            done = False
            for event in events:  # each status is looked at, also after the one that answers
                if event.get("ev") == "status":
                    status, message = str(event.get("status")), str(event.get("message", ""))
                    done = answered(status, message) or done
            if done:
                return True, held
        return False, held

    def _events(self, ws: Any, timeout: float) -> list[Event]:
        try:
            frame = ws.recv(timeout=timeout)
        except TimeoutError:
            return []
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("feed sent a frame that is not JSON (%d bytes): ignored", len(frame))
            return []
        return [e for e in (data if isinstance(data, list) else [data]) if isinstance(e, dict)]

    def _read(self, ws: Any, summary: StreamSummary, stop: StopFlag) -> None:
        """One frame (or none within FLUSH_S): quotes update, trades go to the batch."""
        events = self._events(ws, timeout=FLUSH_S)
        received_us = self._wall_ns() // 1000
        if any(e.get("ev") in ("T", "Q") for e in events):
            if self._silent():
                # Back after a silence: what the feed dropped since the last look at the
                # history comes from it first (this frame waits), as after a reconnect.
                self._fill_silence(summary, stop)
            self._heard_at = self._clock()
        self._handle(events, received_us, summary)

    def _handle(self, events: list[Event], received_us: int, summary: StreamSummary) -> None:
        """Quotes update the symbol's prevailing quote; trades go to the batch."""
        for event in events:
            kind = event.get("ev")
            try:
                if kind == "Q":
                    self._quotes[str(event["sym"])] = Quote(
                        float(event["bp"]), float(event["ap"]), optional_float(event.get("bs")),
                        optional_float(event.get("as")), int(event["t"]) * 1_000_000,
                    )  # fmt: skip
                    summary.quotes += 1
                elif kind == "T":
                    self._add(Trade(
                        symbol=str(event["sym"]), price=float(event["p"]),
                        size=optional_float(event.get("s")), sip_ns=int(event["t"]) * 1_000_000,
                        sequence=int(event["q"]), trade_id=str(event.get("i", "")),
                        received_us=received_us,
                    ), summary)  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("feed event without a usable %s: %s", exc, str(event)[:200])

    def _silent(self) -> bool:
        """The feed has sent no market event for ``stream_silence_s`` or more: a feed may drop
        messages and keep the connection (a slow consumer, a provider fault), so a silence is
        checked against the history."""
        limit = self.cfg.stream_silence_s
        return bool(limit) and self._clock() - self._heard_at >= limit

    def _check_silence(self, summary: StreamSummary, stop: StopFlag) -> None:
        """While the silence lasts, the history once per ``stream_silence_s``."""
        if self._silent() and self._clock() - self._filled_at >= self.cfg.stream_silence_s:
            self._fill_silence(summary, stop)

    def _fill_silence(self, summary: StreamSummary, stop: StopFlag) -> None:
        log.info("feed %s silent for %.0fs while connected: checking the history",
                 self.cfg.stream_url, self._clock() - self._heard_at)  # fmt: skip
        summary.silences += 1
        self._gap_fill(summary, stop)
        self._filled_at = self._clock()

    # -- history -------------------------------------------------------------------------------
    def _gap_fill(self, summary: StreamSummary, stop: StopFlag) -> None:
        """Each symbol's trades from its newest published one's time on (that one and any
        other already published are dropped by sequence number), from the REST history."""
        floor = self._wall_ns() - int(self.cfg.gap_fill_max_s * 1e9)
        for symbol in self.cfg.symbols:
            since = max(self._last_ns.get(symbol, floor), floor)
            trades = self.client.trades_since(symbol, since)
            trades.sort(key=lambda t: t.sequence)
            before = summary.published
            for trade in trades:
                self._add(trade, summary)
            summary.from_history += summary.published - before
            if summary.published > before:
                log.info("%s: %d trades from the history since %d", symbol,
                         summary.published - before, since)  # fmt: skip
            self._flush(summary, stop, force=True)

    # -- publishing ----------------------------------------------------------------------------
    def _add(self, trade: Trade, summary: StreamSummary) -> None:
        symbol = trade.symbol
        if trade.sequence <= self._last_seq.get(symbol, -1):
            summary.duplicates += 1
            return
        self._last_seq[symbol] = trade.sequence
        self._last_ns[symbol] = max(self._last_ns.get(symbol, 0), trade.sip_ns)
        self.coverage.saw(symbol, trade.sip_ns // 1000)
        if not append_trade(self._batch, trade, self._quotes.get(symbol)):
            summary.locked_quotes += 1
        summary.published += 1

    def _flush(self, summary: StreamSummary, stop: StopFlag, force: bool = False) -> bool:
        """Publish the batch when full, due or forced; False when publishing stopped."""
        b = self._batch
        if not len(b) or not (force or len(b) >= BATCH
                              or self._clock() - self._flushed_at >= FLUSH_S):  # fmt: skip
            return True
        values = b.encode()
        keys = b.keys()
        stamps = [t // 1000 for t in b.event_time]
        sent = self.publisher.publish(self.topic, keys, values, stamps)
        self._batch = TickColumns(source=self.cfg.source, received_at=[])
        self._flushed_at = self._clock()
        if sent < len(values):
            summary.published -= len(values) - sent
            summary.stopped_by = stop.signal_name or self.publisher.report.gave_up or "stop"
            return False
        return True


def _is_connection_error(exc: Exception) -> bool:
    """A lost, refused or silent connection: ours, the socket's, or the WebSocket library's
    (closed, failed handshake)."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    return isinstance(exc, FeedLost | OSError | TimeoutError | ConnectionClosed | InvalidHandshake)
