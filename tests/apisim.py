"""A local HTTP server that answers like a Polygon.io-style market-data API, with scripted
failures: the live source's tests run against it (it stands in for a third-party service)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class FakeMarketApi:
    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.known: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, dict[str, Any]] = {}
        self.quotes: dict[str, dict[str, Any]] = {}
        self.aggregates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.script: dict[str, deque[Scripted]] = defaultdict(deque)
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        #: symbol -> every trade so far, in the history endpoint's shape (tests/feedsim.py).
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.page_size = 50
        self.base_url = ""

    # -- scripting -----------------------------------------------------------------------------
    def list_symbol(self, symbol: str) -> None:
        self.known[symbol] = {"ticker": symbol, "name": f"{symbol} Inc.", "market": "stocks",
                              "active": True, "currency_name": "usd"}  # fmt: skip

    def trade(self, symbol: str, price: float, size: float, seq: int, t_ns: int) -> None:
        with self.lock:
            self.trades[symbol] = {"T": symbol, "p": price, "s": size, "q": seq, "t": t_ns,
                                   "i": f"id{seq}", "x": 4}  # fmt: skip

    def quote(self, symbol: str, bid: float, ask: float, t_ns: int) -> None:
        with self.lock:
            self.quotes[symbol] = {"T": symbol, "p": bid, "s": 3, "P": ask, "S": 5, "t": t_ns}

    def fail(self, path_part: str, *answers: Scripted) -> None:
        """Answer the next requests whose path contains ``path_part`` with these first."""
        self.script[path_part].extend(answers)

    def count(self, path_part: str, status: int | None = None) -> int:
        return sum(1 for p, s in self.log if path_part in p and (status is None or s == status))

    # -- serving -------------------------------------------------------------------------------
    def answer(self, path: str, auth: str | None) -> Scripted:
        if auth != f"Bearer {self.api_key}":
            return Scripted(401, body={"status": "ERROR", "error": "Unknown API Key"})
        for part, queue in self.script.items():
            if part in path and queue:
                return queue.popleft()
        parts = path.split("?", maxsplit=1)[0].strip("/").split("/")
        with self.lock:
            if parts[:3] == ["v3", "reference", "tickers"]:
                details = self.known.get(parts[3])
                if details is None:
                    return Scripted(
                        404, body={"status": "NOT_FOUND", "message": "Ticker not found."}
                    )
                return Scripted(200, body={"status": "OK", "results": details})
            symbol = parts[3] if len(parts) > 3 else ""
            if parts[:2] == ["v3", "trades"] and len(parts) == 3:
                symbol = parts[2]
            if symbol not in self.known:
                return Scripted(404, body={"status": "NOT_FOUND"})
            if parts[:3] == ["v2", "last", "trade"]:
                return Scripted(200, body={"status": "OK", "results": self.trades.get(symbol)})
            if parts[:3] == ["v2", "last", "nbbo"]:
                return Scripted(200, body={"status": "OK", "results": self.quotes.get(symbol)})
            if parts[:2] == ["v3", "trades"]:
                return self._trades_page(symbol, path)
            if parts[:3] == ["v2", "aggs", "ticker"]:
                bars = self.aggregates[symbol] or self._minutes_of_the_tape(symbol, parts)
                return Scripted(
                    200, body={"status": "OK", "resultsCount": len(bars), "results": bars}
                )
        return Scripted(404, body={"status": "NOT_FOUND"})

    def _minutes_of_the_tape(self, symbol: str, parts: list[str]) -> list[dict[str, Any]]:
        """Minute bars of the history's trades (``.../range/1/minute/FROM_MS/TO_MS``): their
        trade counts ``n``, what a coverage check compares with."""
        first_ms, last_ms = int(parts[-2]), int(parts[-1])
        counts: Counter[int] = Counter()
        for t in self.history[symbol]:
            ms = t["sip_timestamp"] // 1_000_000
            if first_ms <= ms <= last_ms:
                counts[ms - ms % 60_000] += 1
        return [{"t": start, "n": n} for start, n in sorted(counts.items())]

    def _trades_page(self, symbol: str, path: str) -> Scripted:
        """/v3/trades/{symbol}?timestamp.gte=NS (or .gt): oldest first, ``page_size`` per
        page, then a ``next_url`` carrying a cursor (the index of the next trade), as the real
        API pages."""
        query = dict(urllib.parse.parse_qsl(path.split("?", 1)[1] if "?" in path else ""))
        if "timestamp.gt" in query:
            after = int(query["timestamp.gt"])
            trades = [t for t in self.history[symbol] if t["sip_timestamp"] > after]
        else:
            since = int(query.get("timestamp.gte", "0"))
            trades = [t for t in self.history[symbol] if t["sip_timestamp"] >= since]
        start = int(query.get("cursor", "0"))
        page = trades[start : start + self.page_size]
        body: dict[str, Any] = {"status": "OK", "results": page}
        if start + self.page_size < len(trades):
            rest = urllib.parse.urlencode({**query, "cursor": start + self.page_size})
            body["next_url"] = f"{self.base_url}/v3/trades/{symbol}?{rest}"
        return Scripted(200, body=body)

    @contextmanager
    def serve(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = api.answer(self.path, self.headers.get("Authorization"))
                api.log.append((self.path, reply.status))
                body = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self.base_url
        finally:
            server.shutdown()
            server.server_close()
