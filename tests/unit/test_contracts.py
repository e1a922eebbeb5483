from __future__ import annotations

import math

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.contracts import (
    NAME_PATTERN,
    TICK_FIELDS,
    ContractError,
    Tick,
    TickColumns,
    decode_tick,
    render_schema,
    tick_arrow_schema,
    tick_json_schema,
)
from tests.conftest import REPO_ROOT

GOOD = {
    "symbol": "AAPL",
    "event_time": 1_700_000_000_123_456,
    "seq": 7,
    "price": 189.25,
    "size": 100.0,
    "bid": 189.24,
    "ask": 189.26,
    "bid_size": 300.0,
    "ask_size": None,
    "source": "synthetic",
}


def test_committed_schema_is_current() -> None:
    committed = (REPO_ROOT / "contracts" / "tick.schema.json").read_bytes()
    assert committed == render_schema(), "run `marketpipe contracts` and commit the result"


def test_round_trip() -> None:
    tick = Tick(**GOOD)
    assert decode_tick(tick.to_json()) == tick
    assert tuple(orjson.loads(tick.to_json())) == TICK_FIELDS


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
sizes = st.none() | finite


@given(
    symbol=st.from_regex(NAME_PATTERN, fullmatch=True),
    event_time=st.integers(min_value=0, max_value=2**63 - 1),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    price=finite,
    size=sizes,
    bid=finite,
    ask=finite,
    bid_size=sizes,
    ask_size=sizes,
    received_at=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
)
def test_fast_encoder_agrees_with_the_model(**fields: object) -> None:
    columns = TickColumns(**{k: [v] for k, v in fields.items()}, source="synthetic")  # type: ignore[arg-type]
    (payload,) = columns.encode()
    assert columns.keys() == [str(fields["symbol"]).encode()]
    tick = decode_tick(payload)
    assert tick.to_dict() == {**fields, "source": "synthetic"}
    jsonschema.validate(orjson.loads(payload), tick_json_schema())


def test_a_message_without_a_receipt_time_is_still_a_tick() -> None:
    """Messages written before received_at joined the contract still validate."""
    assert "received_at" not in GOOD
    assert decode_tick(orjson.dumps(GOOD)).received_at is None
    jsonschema.validate(GOOD, tick_json_schema())
    assert decode_tick(orjson.dumps({**GOOD, "received_at": 1_700_000_000_200_000})).received_at
    for bad in (-1, 1.5, "soon"):
        with pytest.raises(ContractError):
            decode_tick(orjson.dumps({**GOOD, "received_at": bad}))


def test_one_receipt_time_for_a_batch_or_one_per_tick() -> None:
    def columns(received_at: int | list[int | None] | None) -> TickColumns:
        return TickColumns(
            symbol=["A", "B"], event_time=[1, 2], seq=[1, 1], price=[1.0, 2.0],
            size=[None, None], bid=[1.0, 2.0], ask=[1.0, 2.0], bid_size=[None, None],
            ask_size=[None, None], source="x", received_at=received_at,
        )  # fmt: skip

    def received(c: TickColumns) -> list[int | None]:
        return [decode_tick(v).received_at for v in c.encode()]

    assert received(columns(None)) == [None, None]
    assert received(columns(7)) == [7, 7]
    assert received(columns([5, None])) == [5, None]
    assert received(columns([5, None]).select([1, 0])) == [None, 5]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": "189.25"}, "string price"),
        ({"seq": True}, "bool seq"),
        ({"event_time": 1.5}, "fractional time"),
        ({"extra": 1}, "unknown field"),
        ({"symbol": ""}, "empty symbol"),
        ({"seq": -1}, "negative seq"),
        ({"seq": 2**63}, "seq beyond 64 bits"),
        ({"event_time": -5}, "negative time"),
        ({"symbol": "AAPL\u200b"}, "zero-width space"),
        ({"symbol": "Ä"}, "non-ASCII symbol"),
        ({"symbol": "A B"}, "space in symbol"),
        ({"symbol": "X" * 65}, "symbol too long"),
        ({"source": "feed\n"}, "control character in source"),
    ],
)
def test_off_contract_is_rejected(change: dict[str, object], reason: str) -> None:
    record = {**GOOD, **change}
    with pytest.raises(ContractError):
        decode_tick(orjson.dumps(record))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, tick_json_schema())


@pytest.mark.parametrize("field", ["price", "symbol", "size"])
def test_missing_field_is_rejected(field: str) -> None:
    record = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(ContractError):
        decode_tick(orjson.dumps(record))


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_rejected(token: bytes) -> None:
    payload = orjson.dumps(GOOD).replace(b'"price":189.25', b'"price":' + token)
    with pytest.raises(ContractError):
        decode_tick(payload)


def test_integer_prices_are_numbers() -> None:
    tick = decode_tick(orjson.dumps({**GOOD, "price": 190, "size": 5}))
    assert tick.price == 190.0
    assert math.isfinite(tick.price)


def test_per_tick_sources_and_keys() -> None:
    columns = TickColumns(
        symbol=["A", "B"],
        event_time=[1_000_999, 2_000_000],
        seq=[1, 1],
        price=[1.0, 2.0],
        size=[None, 1.0],
        bid=[0.9, 1.9],
        ask=[1.1, 2.1],
        bid_size=[None, None],
        ask_size=[None, None],
        source=["x", "y"],
    )
    assert [decode_tick(v).source for v in columns.encode()] == ["x", "y"]
    assert columns.keys() == [b"A", b"B"]


def test_the_arrow_types_of_a_tick_follow_the_contract() -> None:
    schema = tick_arrow_schema()
    assert schema.names == list(TICK_FIELDS)
    assert {f.name: str(f.type) for f in schema} == {
        "symbol": "string", "event_time": "int64", "seq": "int64", "price": "double",
        "size": "double", "bid": "double", "ask": "double", "bid_size": "double",
        "ask_size": "double", "source": "string", "received_at": "int64",
    }  # fmt: skip
    # Only the fields the contract lets be null are nullable.
    assert [f.name for f in schema if f.nullable] == [
        "size", "bid_size", "ask_size", "received_at"
    ]  # fmt: skip
