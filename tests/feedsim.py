"""A Polygon.io-style streaming provider for the stream mode's tests: a market that makes
trades and quotes at a steady rate, a real WebSocket server that streams them to subscribed
clients, and the tape as history on the fake REST API (tests/apisim.py). It can drop every
connection, send trades twice, pause, and rate-limit the history: what a real feed does to a
client. It stands in for a third-party service."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from tests.apisim import FakeMarketApi


class FakeFeed:
    def __init__(self, api: FakeMarketApi, symbols: list[str], trades_per_s: float = 400) -> None:
        self.api = api
        self.symbols = symbols
        self.interval_s = 1.0 / trades_per_s
        self.clients: list[tuple[ServerConnection, set[str]]] = []
        self.lock = threading.Lock()
        self.seq = dict.fromkeys(symbols, 1000)
        self.made = 0
        self.duplicate_every = 0  # send every n-th trade twice (0: never)
        self.paused = threading.Event()
        self.muted = threading.Event()  # trades made (and in the history) but not sent
        self.subscribe_delay_s = 0.0  # a subscription takes effect (and is confirmed) this late
        self.dropped = 0
        self._stop = threading.Event()
        self._rng = random.Random(7)

    # -- faults --------------------------------------------------------------------------------
    def drop_all(self) -> None:
        """Close every client connection abruptly (as a provider restart or a network fault)."""
        with self.lock:
            clients, self.clients = self.clients, []
        for ws, _ in clients:
            ws.socket.close()  # no close frame: the client finds out the hard way
        self.dropped += 1

    def tape(self, symbol: str) -> list[dict[str, Any]]:
        with self.api.lock:
            return list(self.api.history[symbol])

    # -- the market ----------------------------------------------------------------------------
    def _make(self) -> None:
        while not self._stop.is_set():
            time.sleep(self.interval_s)
            if self.paused.is_set():
                continue
            symbol = self._rng.choice(self.symbols)
            self.seq[symbol] += self._rng.randint(1, 5)  # increasing, not contiguous
            now_ms = time.time_ns() // 1_000_000
            price = round(100 + self._rng.random(), 2)
            quote = {"ev": "Q", "sym": symbol, "bp": price - 0.01, "bs": 3, "ap": price + 0.01,
                     "as": 5, "t": now_ms}  # fmt: skip
            trade = {"ev": "T", "sym": symbol, "p": price, "s": 100, "t": now_ms,
                     "q": self.seq[symbol], "i": f"t{self.seq[symbol]}"}  # fmt: skip
            with self.api.lock:
                self.api.history[symbol].append({
                    "price": price, "size": 100, "sip_timestamp": now_ms * 1_000_000,
                    "sequence_number": self.seq[symbol], "id": trade["i"],
                })  # fmt: skip
            self.made += 1
            events = [quote, trade]
            if self.duplicate_every and self.made % self.duplicate_every == 0:
                events.append(trade)
            self._broadcast(symbol, events)

    def _broadcast(self, symbol: str, events: list[dict[str, Any]]) -> None:
        if self.muted.is_set():  # a provider dropping messages, the connection up
            return
        frame = json.dumps(events)
        with self.lock:
            clients = list(self.clients)
        for ws, channels in clients:
            if f"T.{symbol}" in channels:
                with contextlib.suppress(ConnectionClosed, OSError):
                    ws.send(frame)

    # -- the server ----------------------------------------------------------------------------
    def _handle(self, ws: ServerConnection) -> None:
        ws.send(json.dumps([{"ev": "status", "status": "connected"}]))
        channels: set[str] = set()
        try:
            for message in ws:
                request = json.loads(message)
                if request.get("action") == "auth":
                    ok = request.get("params") == self.api.api_key
                    status = "auth_success" if ok else "auth_failed"
                    ws.send(json.dumps([{"ev": "status", "status": status}]))
                    if not ok:
                        return
                elif request.get("action") == "subscribe":
                    asked = str(request["params"]).split(",")
                    channels.update(asked)
                    time.sleep(self.subscribe_delay_s)
                    with self.lock:
                        self.clients.append((ws, channels))
                    # Confirmed only once trades are sent to it (as the provider does): the
                    # client's gap-fill waits for these.
                    ws.send(json.dumps([
                        {"ev": "status", "status": "success", "message": f"subscribed to: {c}"}
                        for c in asked
                    ]))  # fmt: skip
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self.lock:
                self.clients = [(w, c) for w, c in self.clients if w is not ws]

    @contextmanager
    def serve(self) -> Iterator[str]:
        server = serve(self._handle, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        maker = threading.Thread(target=self._make, daemon=True)
        maker.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        finally:
            self._stop.set()
            maker.join(5)
            server.shutdown()
