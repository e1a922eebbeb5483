"""Quality rules: pure functions from a message (and the symbol's state) to reason codes.

Four families, checked in this order:
- schema: the bytes are a JSON object with exactly the contract's fields, of the right types,
  finite, within range, and the Kafka key equals the symbol. A hand-written check, because
  pydantic costs ~3x more per message; a property test keeps it in agreement with ``Tick``.
- sequence: a (symbol, source, seq) already seen is a duplicate; a jump over seqs is a gap,
  counted and reported, while the tick itself passes.
- market integrity: positive prices and sizes, bid < ask (locked allowed by setting), relative
  spread below a limit, price inside [bid, ask] give or take a tolerance, no jump against the
  symbol's last valid price beyond a limit.
- time: out of order beyond a tolerance (against the symbol's newest valid tick), stale (event
  time far behind arrival), or in the future beyond a clock skew. Sources listed as historical
  (replays) skip the stale and future checks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from marketpipe.contracts import NAME_PATTERN, TICK_FIELDS
from marketpipe.settings import QualitySettings

# Reason codes (also the DLQ header values and metric attributes).
TOO_LARGE = "too_large"
EMPTY = "empty"
INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
UNKNOWN_FIELD = "unknown_field"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
INVALID_SYMBOL = "invalid_symbol"
KEY_MISMATCH = "key_mismatch"
DUPLICATE = "duplicate"
NON_POSITIVE_PRICE = "non_positive_price"
NON_POSITIVE_SIZE = "non_positive_size"
NON_POSITIVE_BID = "non_positive_bid"
NON_POSITIVE_ASK = "non_positive_ask"
CROSSED = "crossed"
LOCKED = "locked"
WIDE_SPREAD = "wide_spread"
PRICE_OUTSIDE_QUOTE = "price_outside_quote"
PRICE_JUMP = "price_jump"
OUT_OF_ORDER = "out_of_order"
STALE = "stale"
FUTURE = "future"

FIELDS = frozenset(TICK_FIELDS)
NUMBERS = ("price", "bid", "ask")
OPTIONAL_NUMBERS = ("size", "bid_size", "ask_size")
_NAME = re.compile(NAME_PATTERN)
_INT_LIMIT = 2**63


class Thresholds:
    """QualitySettings in the units the rules use (microseconds, fractions), computed once."""

    def __init__(self, cfg: QualitySettings) -> None:
        self.max_message_bytes = cfg.max_message_bytes
        self.allow_locked = cfg.allow_locked
        self.allow_locked_sources = frozenset(cfg.allow_locked_sources)
        self.max_spread = cfg.max_spread_bps / 1e4
        self.price_tolerance = cfg.price_tolerance_bps / 1e4
        self.max_log_jump = math.log1p(cfg.max_jump_pct / 100.0)
        self.out_of_order_us = int(cfg.out_of_order_tolerance_ms * 1000)
        self.stale_us = int(cfg.stale_after_ms * 1000)
        self.future_us = int(cfg.future_skew_ms * 1000)
        self.historical_sources = frozenset(cfg.historical_sources)


@dataclass(frozen=True)
class SchemaError:
    reason: str
    detail: str


def check_schema(
    value: bytes | None, key: bytes | None, th: Thresholds
) -> tuple[dict[str, Any], None] | tuple[None, SchemaError]:
    """Parse and validate one message against the contract (and its key)."""
    if not value:
        return None, SchemaError(EMPTY, "empty message value")
    if len(value) > th.max_message_bytes:
        return None, SchemaError(TOO_LARGE, f"{len(value)} bytes, more than {th.max_message_bytes}")
    try:
        tick = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return None, SchemaError(INVALID_JSON, f"not JSON: {exc}"[:300])
    if type(tick) is not dict:
        return None, SchemaError(NOT_OBJECT, f"a JSON {type(tick).__name__}, not an object")
    if tick.keys() != FIELDS:
        missing = sorted(FIELDS - tick.keys())
        if missing:
            return None, SchemaError(MISSING_FIELD, "missing " + ", ".join(missing))
        extra = sorted(tick.keys() - FIELDS)
        return None, SchemaError(UNKNOWN_FIELD, "unknown " + ", ".join(e[:40] for e in extra))
    for name in ("symbol", "source"):
        text = tick[name]
        if type(text) is not str:
            return None, SchemaError(WRONG_TYPE, f"{name} is {type(text).__name__}, not a string")
        if not _NAME.fullmatch(text):
            return None, SchemaError(
                INVALID_SYMBOL, f"{name} {text[:70]!r} is not 1-64 of [A-Za-z0-9._:/=^+-]"
            )
    for name in ("event_time", "seq"):
        number = tick[name]
        if type(number) is not int:
            return None, SchemaError(
                WRONG_TYPE, f"{name} is {type(number).__name__}, not an integer"
            )
        if not 0 <= number < _INT_LIMIT:
            return None, SchemaError(OUT_OF_RANGE, f"{name} {number} outside [0, 2^63)")
    for name in NUMBERS:
        error = _number(tick, name, optional=False)
        if error:
            return None, error
    for name in OPTIONAL_NUMBERS:
        error = _number(tick, name, optional=True)
        if error:
            return None, error
    if key is None or key != tick["symbol"].encode():
        shown = "no key" if key is None else f"key {key[:70]!r}"
        return None, SchemaError(KEY_MISMATCH, f"{shown} is not the symbol {tick['symbol']!r}")
    return tick, None


def _number(tick: dict[str, Any], name: str, optional: bool) -> SchemaError | None:
    value = tick[name]
    kind = type(value)
    if kind is float:
        if not math.isfinite(
            value
        ):  # orjson refuses NaN/Infinity; a huge literal can still overflow
            return SchemaError(NOT_FINITE, f"{name} is not finite")
        return None
    if kind is int:
        return None
    if value is None and optional:
        return None
    return SchemaError(WRONG_TYPE, f"{name} is {kind.__name__}, not a number")


def check_market(tick: dict[str, Any], last_price: float | None, th: Thresholds) -> list[str]:
    """Market-integrity reasons for a schema-valid tick (empty when it is sound)."""
    reasons = []
    price, bid, ask, size = tick["price"], tick["bid"], tick["ask"], tick["size"]
    if price <= 0:
        reasons.append(NON_POSITIVE_PRICE)
    if size is not None and size <= 0:
        reasons.append(NON_POSITIVE_SIZE)
    if bid <= 0:
        reasons.append(NON_POSITIVE_BID)
    if ask <= 0:
        reasons.append(NON_POSITIVE_ASK)
    if bid > ask:
        reasons.append(CROSSED)
    elif bid == ask and not (th.allow_locked or tick["source"] in th.allow_locked_sources):
        reasons.append(LOCKED)
    if bid > 0 and ask > 0:
        mid = (bid + ask) / 2.0
        if bid <= ask and (ask - bid) / mid > th.max_spread:
            reasons.append(WIDE_SPREAD)
        low, high = min(bid, ask), max(bid, ask)
        if price < low * (1.0 - th.price_tolerance) or price > high * (1.0 + th.price_tolerance):
            reasons.append(PRICE_OUTSIDE_QUOTE)
    if last_price is not None and price > 0 and abs(math.log(price / last_price)) > th.max_log_jump:
        reasons.append(PRICE_JUMP)
    return reasons


def check_time(
    tick: dict[str, Any], last_time: int | None, now_us: int, th: Thresholds
) -> list[str]:
    """Time reasons: against the symbol's newest valid tick and the arrival clock."""
    reasons = []
    event_time = tick["event_time"]
    if last_time is not None and event_time < last_time - th.out_of_order_us:
        reasons.append(OUT_OF_ORDER)
    if tick["source"] not in th.historical_sources:
        if th.stale_us and event_time < now_us - th.stale_us:
            reasons.append(STALE)
        if event_time > now_us + th.future_us:
            reasons.append(FUTURE)
    return reasons
