"""Quality rules: pure functions from a message (and the symbol's state) to reason codes.

Four families, checked in this order:
- schema: the bytes decode as a ``Tick`` (exactly the contract's fields, of the right types,
  finite, within range; msgspec does it in C) and the Kafka key equals the symbol.
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

from dataclasses import dataclass

import msgspec

from marketpipe.contracts import Tick, decode_tick
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


class Thresholds:
    """QualitySettings in the units the rules use (microseconds, fractions), computed once."""

    def __init__(self, cfg: QualitySettings) -> None:
        self.max_message_bytes = cfg.max_message_bytes
        self.allow_locked = cfg.allow_locked
        self.allow_locked_sources = frozenset(cfg.allow_locked_sources)
        self.max_spread = cfg.max_spread_bps / 1e4
        tolerance = cfg.price_tolerance_bps / 1e4
        self.below_quote, self.above_quote = 1.0 - tolerance, 1.0 + tolerance
        # Symmetric in log space: up by (1 + jump) or down by 1 / (1 + jump).
        self.jump_up = 1.0 + cfg.max_jump_pct / 100.0
        self.jump_down = 1.0 / self.jump_up
        self.out_of_order_us = int(cfg.out_of_order_tolerance_ms * 1000)
        self.stale_us = int(cfg.stale_after_ms * 1000)
        self.future_us = int(cfg.future_skew_ms * 1000)
        self.historical_sources = frozenset(cfg.historical_sources)


@dataclass(frozen=True)
class SchemaError:
    reason: str
    detail: str


# msgspec's error messages, most specific first -> reason codes.
_ERROR_REASONS = (
    ("missing required field", MISSING_FIELD),
    ("unknown field", UNKNOWN_FIELD),
    ("matching regex", INVALID_SYMBOL),
    ("Number out of range", NOT_FINITE),
    (">= 0", OUT_OF_RANGE),
    ("<= 9223372036854775807", OUT_OF_RANGE),
)


def check_schema(
    value: bytes | None, key: bytes | None, th: Thresholds
) -> tuple[Tick, None] | tuple[None, SchemaError]:
    """Decode and validate one message against the contract (and its key)."""
    if not value:
        return None, SchemaError(EMPTY, "empty message value")
    if len(value) > th.max_message_bytes:
        return None, SchemaError(TOO_LARGE, f"{len(value)} bytes, more than {th.max_message_bytes}")
    try:
        tick = decode_tick(value)
    except msgspec.ValidationError as exc:
        return None, SchemaError(_classify(str(exc)), str(exc)[:300])
    except msgspec.DecodeError as exc:
        return None, SchemaError(INVALID_JSON, f"not JSON: {exc}"[:300])
    if key is None or key != tick.symbol.encode():
        shown = "no key" if key is None else f"key {key[:70]!r}"
        return None, SchemaError(KEY_MISMATCH, f"{shown} is not the symbol {tick.symbol!r}")
    return tick, None


def _classify(message: str) -> str:
    if message.startswith("Expected `object`") and "- at `$." not in message:
        return NOT_OBJECT
    for marker, reason in _ERROR_REASONS:
        if marker in message:
            return reason
    return WRONG_TYPE


def check_market(tick: Tick, last_price: float | None, th: Thresholds) -> tuple[str, ...]:
    """Market-integrity reasons for a schema-valid tick (empty when it is sound)."""
    price, bid, ask, size = tick.price, tick.bid, tick.ask, tick.size
    # Fast path: one expression that holds for sound ticks (nearly all of them).
    if (
        0.0 < bid < ask
        and price > 0.0
        and (size is None or size > 0.0)
        and ask - bid <= th.max_spread * (bid + ask) * 0.5
        and bid * th.below_quote <= price <= ask * th.above_quote
        and (last_price is None or last_price * th.jump_down <= price <= last_price * th.jump_up)
    ):
        return ()
    reasons = []
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
    elif bid == ask and not (th.allow_locked or tick.source in th.allow_locked_sources):
        reasons.append(LOCKED)
    if bid > 0 and ask > 0:
        if bid <= ask and (ask - bid) > th.max_spread * (bid + ask) * 0.5:
            reasons.append(WIDE_SPREAD)
        low, high = min(bid, ask), max(bid, ask)
        if price < low * th.below_quote or price > high * th.above_quote:
            reasons.append(PRICE_OUTSIDE_QUOTE)
    if (
        last_price is not None
        and price > 0
        and not (last_price * th.jump_down <= price <= last_price * th.jump_up)
    ):
        reasons.append(PRICE_JUMP)
    return tuple(reasons)


def check_time(tick: Tick, last_time: int | None, now_us: int, th: Thresholds) -> tuple[str, ...]:
    """Time reasons: against the symbol's newest valid tick and the arrival clock."""
    event_time = tick.event_time
    in_order = last_time is None or event_time >= last_time - th.out_of_order_us
    if tick.source in th.historical_sources:
        return () if in_order else (OUT_OF_ORDER,)
    if (
        in_order
        and (not th.stale_us or event_time >= now_us - th.stale_us)
        and event_time <= now_us + th.future_us
    ):
        return ()
    reasons = [] if in_order else [OUT_OF_ORDER]
    if th.stale_us and event_time < now_us - th.stale_us:
        reasons.append(STALE)
    if event_time > now_us + th.future_us:
        reasons.append(FUTURE)
    return tuple(reasons)
