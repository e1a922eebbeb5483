"""A small client for a Polygon.io-style REST market-data API.

Endpoints used: ``/v2/last/trade/{T}``, ``/v2/last/nbbo/{T}``, ``/v3/reference/tickers/{T}``
and ``/v2/aggs/ticker/{T}/range/1/minute/{from}/{to}``. The API key travels in an
``Authorization: Bearer`` header, never in the URL, so it cannot leak into logs.

Failures: connection errors, timeouts and 5xx are retried with exponential backoff and full
jitter; 429 waits for Retry-After (or the backoff) and also holds off every other request; 404
means the symbol does not exist (no retry); 401/403 mean the key is wrong (fatal).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketpipe.ingest.backoff import RateLimiter, retry_after_seconds
from marketpipe.retry import Backoff
from marketpipe.settings import LiveSettings

log = logging.getLogger(__name__)


class ApiError(Exception):
    """The API answered, but not with data."""


class NotFound(ApiError):
    """The symbol (or resource) does not exist."""


class AuthError(ApiError):
    """The API key was refused: nothing will work until it is fixed."""


class ApiUnavailable(ApiError):
    """The API did not answer usefully after every retry."""


@dataclass(frozen=True)
class Trade:
    symbol: str
    price: float
    size: float | None
    sip_ns: int  # SIP timestamp, epoch nanoseconds
    sequence: int  # increasing per symbol (not contiguous)
    trade_id: str
    received_us: int | None = None  # when marketpipe got it, epoch microseconds


def optional_float(value: Any) -> float | None:
    """A provider's number that may be missing (sizes): float, or None."""
    return None if value is None else float(value)


@dataclass(frozen=True)
class Quote:
    bid: float
    ask: float
    bid_size: float | None
    ask_size: float | None
    sip_ns: int


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class PolygonClient:
    def __init__(
        self,
        cfg: LiveSettings,
        sleep: Callable[[float], object] = time.sleep,
        limiter: RateLimiter | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if cfg.api_key is None or not cfg.api_key.get_secret_value():
            raise AuthError("no API key: set MARKETPIPE_LIVE__API_KEY")
        self.cfg = cfg
        self._sleep = sleep
        self._limiter = limiter or RateLimiter(cfg.max_requests_per_s, sleep=sleep)
        self._backoff = backoff or Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        self._headers = {
            "Authorization": f"Bearer {cfg.api_key.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": "marketpipe",
        }
        self.stats = ClientStats()

    # -- endpoints -----------------------------------------------------------------------------
    def last_trade(self, symbol: str) -> Trade | None:
        r = self.get(f"/v2/last/trade/{_quote(symbol)}").get("results")
        received_us = time.time_ns() // 1000
        if not r or r.get("p") is None or r.get("t") is None:
            return None
        return Trade(
            symbol=symbol,
            price=float(r["p"]),
            size=optional_float(r.get("s")),
            sip_ns=int(r["t"]),
            sequence=int(r.get("q", 0)),
            trade_id=str(r.get("i", "")),
            received_us=received_us,
        )

    def last_quote(self, symbol: str) -> Quote | None:
        r = self.get(f"/v2/last/nbbo/{_quote(symbol)}").get("results")
        if not r or r.get("p") is None or r.get("P") is None:
            return None
        return Quote(
            bid=float(r["p"]),
            ask=float(r["P"]),
            bid_size=optional_float(r.get("s")),
            ask_size=optional_float(r.get("S")),
            sip_ns=int(r.get("t", 0)),
        )

    def trades_since(self, symbol: str, from_ns: int, limit: int = 50_000) -> list[Trade]:
        """Every trade with a SIP timestamp at or after ``from_ns`` (trades can share the
        newest published one's time: the caller drops what it has by sequence number), oldest
        first, following the
        history endpoint's pages (``next_url``); the rate limit and retries apply per page."""
        out: list[Trade] = []
        path = f"/v3/trades/{_quote(symbol)}"
        params: dict[str, str] | None = {
            "timestamp.gte": str(from_ns), "order": "asc", "sort": "timestamp",
            "limit": str(limit),
        }  # fmt: skip
        while True:
            page = self.get(path, params)
            received_us = time.time_ns() // 1000
            for r in page.get("results") or []:
                out.append(
                    Trade(
                        symbol=symbol,
                        price=float(r["price"]),
                        size=optional_float(r.get("size")),
                        sip_ns=int(r["sip_timestamp"]),
                        sequence=int(r["sequence_number"]),
                        trade_id=str(r.get("id", "")),
                        received_us=received_us,
                    )
                )
            next_url = page.get("next_url")
            if not next_url:
                return out
            parsed = urllib.parse.urlparse(str(next_url))
            path, params = parsed.path, dict(urllib.parse.parse_qsl(parsed.query)) or None

    def ticker_details(self, symbol: str) -> dict[str, Any]:
        results: dict[str, Any] = (
            self.get(f"/v3/reference/tickers/{_quote(symbol)}").get("results") or {}
        )
        return results

    def minute_aggregates(self, symbol: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        path = f"/v2/aggs/ticker/{_quote(symbol)}/range/1/minute/{from_ms}/{to_ms}"
        results: list[dict[str, Any]] = (
            self.get(path, {"adjusted": "true", "sort": "asc"}).get("results") or []
        )
        return results

    # -- transport -----------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET with the retry policy in the module docstring."""
        url = self.cfg.base_url.rstrip("/") + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        endpoint = path.split("/")[2] if path.count("/") >= 2 else path
        attempt = rate_waits = 0
        while True:
            attempt += 1
            self._limiter.acquire()
            self.stats.requests += 1
            try:
                request = urllib.request.Request(url, headers=self._headers)
                with urllib.request.urlopen(request, timeout=self.cfg.request_timeout_s) as resp:
                    body = resp.read()
                self.stats.outcomes[f"{endpoint}:ok"] += 1
                return _decode(body, url)
            except urllib.error.HTTPError as exc:
                status = exc.code
                self.stats.outcomes[f"{endpoint}:{status}"] += 1
                detail = _error_text(exc)
                if status == 404:
                    raise NotFound(f"{path}: not found ({detail})") from None
                if status in (401, 403):
                    raise AuthError(
                        f"API key refused by {self.cfg.base_url} ({status}: {detail})"
                    ) from None
                if status == 429:  # not a failure: wait as told, without using up retries
                    self.stats.rate_limited += 1
                    rate_waits += 1
                    attempt -= 1
                    if rate_waits > self.cfg.max_rate_limit_waits:
                        raise ApiUnavailable(
                            f"{path}: still rate limited after {rate_waits} waits"
                        ) from None
                    wait = retry_after_seconds(exc.headers.get("Retry-After"))
                    wait = self._backoff.ceiling(rate_waits) if wait is None else wait
                    log.warning("rate limited on %s: waiting %.1fs", endpoint, wait)
                    self._limiter.hold_off(wait)
                    continue
                if status < 500:
                    raise ApiError(f"{path}: HTTP {status} ({detail})") from None
                problem = f"HTTP {status} ({detail})"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                self.stats.outcomes[f"{endpoint}:error"] += 1
                problem = str(getattr(exc, "reason", exc))
            if attempt > self.cfg.max_retries:
                raise ApiUnavailable(f"{path}: {problem} after {attempt} tries")
            delay = self._backoff.delay(attempt)
            self.stats.retries += 1
            log.info("retrying %s in %.2fs (attempt %d): %s", endpoint, delay, attempt, problem)
            self._sleep(delay)


def _quote(symbol: str) -> str:
    return urllib.parse.quote(symbol, safe="")


def _decode(body: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(f"{url}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(f"{url}: answer is not a JSON object")
    return data


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(2048)
        data = json.loads(body)
        return str(data.get("message") or data.get("error") or data.get("status") or "")[:200]
    except Exception:  # the status code is what matters
        return exc.reason if isinstance(exc.reason, str) else ""
