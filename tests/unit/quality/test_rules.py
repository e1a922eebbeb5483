"""Property-based tests of the quality rules (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from marketpipe.contracts import NAME_PATTERN, Tick, tick_json_schema
from marketpipe.quality import rules
from marketpipe.quality.rules import Thresholds, check_market, check_schema, check_time
from marketpipe.settings import QualitySettings

TH = Thresholds(QualitySettings())
NOW = 1_700_000_000_000_000

names = st.from_regex(NAME_PATTERN, fullmatch=True)
prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
sizes = st.none() | st.floats(min_value=1e-6, max_value=1e9)


@st.composite
def sound_records(draw: st.DrawFn) -> dict[str, Any]:
    """Ticks that break no market rule: a tight quote and a trade inside it."""
    mid = draw(prices)
    half = mid * draw(st.floats(min_value=1e-5, max_value=0.01))
    bid, ask = mid - half, mid + half
    assume(0 < bid < ask)
    record = {
        "symbol": draw(names),
        "event_time": NOW - draw(st.integers(0, 1_000_000)),
        "seq": draw(st.integers(0, 2**63 - 1)),
        "price": draw(st.floats(min_value=bid, max_value=ask)),
        "size": draw(sizes),
        "bid": bid,
        "ask": ask,
        "bid_size": draw(sizes),
        "ask_size": draw(sizes),
        "source": draw(names),
    }
    # Receipt time: optional (old messages and replays have none), null, or a time.
    received = draw(st.sampled_from(["absent", "null", "time"]))
    if received != "absent":
        record["received_at"] = None if received == "null" else NOW + draw(st.integers(0, 10**7))
    return record


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


SCHEMA = tick_json_schema()
FIELDS = list(SCHEMA["properties"])
FLOAT_FIELDS = {f.name for f in msgspec.structs.fields(Tick) if "float" in repr(f.type)}
INT_FIELDS = {
    name
    for name, spec in SCHEMA["properties"].items()
    if "integer" in {spec.get("type"), *(s.get("type") for s in spec.get("anyOf", []))}
}


def as_decoded(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the contract decodes it: JSON integers in number fields become floats
    (a 64-bit integer may round to the nearest double, which is what the tick then carries)."""
    return {
        "received_at": None,  # the default of an optional field the record leaves out
        **{
            k: float(v) if k in FLOAT_FIELDS and isinstance(v, int) and not isinstance(v, bool)
            else v
            for k, v in record.items()
        },
    }  # fmt: skip


SOUND: dict[str, Any] = {
    "symbol": "0",
    "event_time": NOW,
    "seq": 0,
    "price": 1.0,
    "size": None,
    "bid": 0.9921875,
    "ask": 1.0078125,
    "bid_size": None,
    "ask_size": None,
    "source": "0",
}


def sound_ticks() -> st.SearchStrategy[Tick]:
    return sound_records().map(lambda r: Tick(**r))


@given(base=sound_records(), field=st.sampled_from(FIELDS), junk=json_values)
@example(
    base={**SOUND, "price": 814492.7362061805, "bid": 814492.7362061805, "ask": 814509.0262238049},
    field="ask",
    junk=-(2**63) + 1,  # a JSON integer no double holds exactly (found by CI)
)
@example(base=SOUND, field="event_time", junk=0.0)  # integral float in an integer field
@settings(max_examples=400)
def test_schema_check_agrees_with_the_published_json_schema(
    base: dict[str, Any], field: str, junk: object
) -> None:
    """What the checker enforces is what contracts/tick.schema.json promises."""
    record = {**base, field: junk}
    payload = orjson.dumps(record)
    key = str(record["symbol"]).encode() if isinstance(record["symbol"], str) else b"x"
    tick, error = check_schema(payload, key, TH)
    try:
        jsonschema.validate(record, SCHEMA)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    if field in INT_FIELDS and isinstance(junk, float):
        schema_ok = False  # the one documented difference: integers must be integer literals
    assert (error is None) == schema_ok, (record, error)
    if tick is not None:
        assert tick.to_dict() == as_decoded(record)


@given(base=sound_records())
def test_sound_ticks_pass_every_rule(base: dict[str, Any]) -> None:
    tick, error = check_schema(orjson.dumps(base), base["symbol"].encode(), TH)
    assert error is None
    assert tick is not None
    assert check_market(tick, tick.price, TH) == ()
    assert check_time(tick, tick.event_time, NOW, TH) == ()


@given(base=sound_records(), gap=st.floats(min_value=1e-9, max_value=1e3))
def test_crossed_quotes_are_always_caught(base: dict[str, Any], gap: float) -> None:
    tick = Tick(**{**base, "bid": base["ask"] + gap * base["ask"]})
    assume(tick.bid > tick.ask)
    assert rules.CROSSED in check_market(tick, None, TH)


@given(base=sound_records(), field=st.sampled_from(["price", "bid", "ask", "size"]),
       value=st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))  # fmt: skip
def test_non_positive_values_are_caught(base: dict[str, Any], field: str, value: float) -> None:
    reasons = check_market(Tick(**{**base, field: value}), None, TH)
    code = {"price": rules.NON_POSITIVE_PRICE, "size": rules.NON_POSITIVE_SIZE,
            "bid": rules.NON_POSITIVE_BID, "ask": rules.NON_POSITIVE_ASK}[field]  # fmt: skip
    assert code in reasons


@given(base=sound_ticks(), move=st.floats(min_value=-0.5, max_value=0.5))
def test_jump_limit_is_symmetric_in_log_space(base: Tick, move: float) -> None:
    last = base.price * math.exp(move)
    limit = math.log1p(0.10)
    assume(abs(abs(math.log(base.price / last)) - limit) > 1e-9)  # not on the float boundary
    flagged = rules.PRICE_JUMP in check_market(base, last, TH)
    assert flagged == (abs(math.log(base.price / last)) > limit)


def make(**fields: Any) -> Tick:
    base: dict[str, Any] = {
        "symbol": "A", "event_time": NOW, "seq": 1, "price": 100.0, "size": 5.0,
        "bid": 99.99, "ask": 100.01, "bid_size": None, "ask_size": None, "source": "s",
    }  # fmt: skip
    return Tick(**{**base, **fields})


def test_locked_quote_is_configurable() -> None:
    tick = make(price=10.0, bid=10.0, ask=10.0, source="live")
    assert rules.LOCKED in check_market(tick, None, TH)
    assert rules.LOCKED not in check_market(
        make(price=10.0, bid=10.0, ask=10.0, source="replay"), None, TH
    )
    allowed = Thresholds(QualitySettings(allow_locked=True))
    assert check_market(tick, None, allowed) == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bid": 90.0, "ask": 110.0, "price": 100.0}, rules.WIDE_SPREAD),  # 20% > 10%
        ({"price": 102.0}, rules.PRICE_OUTSIDE_QUOTE),  # ask 100.01 + 1% = 101.01
        ({"price": 98.9}, rules.PRICE_OUTSIDE_QUOTE),
        ({"size": 0.0}, rules.NON_POSITIVE_SIZE),
    ],
)
def test_market_rule_thresholds(change: dict[str, float], reason: str) -> None:
    assert reason in check_market(make(**change), None, TH)


@pytest.mark.parametrize(
    ("event_time", "last", "source", "expected"),
    [
        (NOW - 500_000, NOW, "live", []),  # within the 1 s tolerance
        (NOW - 1_500_000, NOW, "live", [rules.OUT_OF_ORDER]),
        (NOW - 61_000_000, None, "live", [rules.STALE]),
        (NOW - 61_000_000, None, "replay", []),  # history is not stale
        (NOW + 6_000_000, None, "live", [rules.FUTURE]),
        (NOW + 6_000_000, None, "replay", []),
        (NOW - 3_600_000_000, NOW, "replay", [rules.OUT_OF_ORDER]),
    ],
)
def test_time_rules(event_time: int, last: int | None, source: str, expected: list[str]) -> None:
    assert check_time(make(event_time=event_time, source=source), last, NOW, TH) == tuple(expected)


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b"A", rules.EMPTY),
        (None, b"A", rules.EMPTY),
        (b"\xff\xfe\x00garbage", b"A", rules.INVALID_JSON),
        (b'{"symbol": "A", "price": 1', b"A", rules.INVALID_JSON),
        (b'{"price": NaN}', b"A", rules.INVALID_JSON),
        (b"[1, 2]", b"A", rules.NOT_OBJECT),
        (b'"tick"', b"A", rules.NOT_OBJECT),
        (b"x" * 70_000, b"A", rules.TOO_LARGE),
    ],
)
def test_schema_reasons_for_broken_bytes(value: bytes | None, key: bytes, reason: str) -> None:
    tick, error = check_schema(value, key, TH)
    assert tick is None
    assert error is not None
    assert error.reason == reason


def test_key_must_be_the_symbol() -> None:
    good = {"symbol": "AAPL", "event_time": NOW, "seq": 1, "price": 1.0, "size": None,
            "bid": 0.9, "ask": 1.1, "bid_size": None, "ask_size": None, "source": "s"}  # fmt: skip
    payload = orjson.dumps(good)
    assert check_schema(payload, b"AAPL", TH)[1] is None
    for key in (None, b"MSFT", b""):
        error = check_schema(payload, key, TH)[1]
        assert error is not None
        assert error.reason == rules.KEY_MISMATCH
    huge = payload.replace(b'"seq":1', b'"seq":123456789012345678901234567890')
    error = check_schema(huge, b"AAPL", TH)[1]
    assert error is not None
    assert error.reason == rules.OUT_OF_RANGE
