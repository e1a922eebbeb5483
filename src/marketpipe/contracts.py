"""The wire contract: one record type, a trade with its prevailing top-of-book quote.

Messages on ``ticks.raw`` and ``ticks.valid`` are UTF-8 JSON objects with exactly the fields of
``Tick``; the Kafka key is the symbol. ``Tick`` is a msgspec Struct: one definition that both
validates messages (in C: the quality checker decodes every message with it) and generates
``contracts/tick.schema.json`` (``marketpipe contracts``), which a test keeps equal to the
committed copy. Producers serialise whole batches with ``TickColumns.encode``; a test checks
that everything it writes decodes as a ``Tick``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson

SCHEMA_ID = "https://marketpipe.dev/schemas/tick.schema.json"
SCHEMA_PATH = Path("contracts") / "tick.schema.json"
#: Symbols and sources: 1-64 printable ASCII characters that are safe in keys and paths.
#: ``(?!\n)`` because Python's ``$`` also matches before a final newline (ECMA's does not).
NAME_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+-]{0,63}(?!\n)$"
_MAX_DOUBLE = 1.7976931348623157e308

#: Field order on the wire; producers emit exactly these keys.
TICK_FIELDS: tuple[str, ...] = (
    "symbol",
    "event_time",
    "seq",
    "price",
    "size",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "source",
    "received_at",
)

#: Raised by ``decode_tick`` for anything off-contract (bad JSON or a bad value).
ContractError = msgspec.DecodeError


# The bounds exclude +-Infinity (JSON has no NaN): every number is finite.
_FINITE: dict[str, Any] = {"ge": -_MAX_DOUBLE, "le": _MAX_DOUBLE}
_INT63: dict[str, Any] = {"ge": 0, "le": 2**63 - 1}
# JSON Schema counts 1.0 as an integer; the decoder (like most typed ones) does not.
_INT_LITERAL = "written as a JSON integer (1700000000000000, not 1.7e15 or 1700000000000000.0)."


class Tick(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One trade and the quote prevailing when it happened."""

    symbol: Annotated[
        str,
        msgspec.Meta(
            pattern=NAME_PATTERN,
            description="Instrument (letters, digits and . _ : / = ^ + -); also the Kafka key.",
        ),
    ]
    event_time: Annotated[
        int,
        msgspec.Meta(
            **_INT63,
            description="When the trade happened: epoch microseconds, UTC; " + _INT_LITERAL,
        ),
    ]
    seq: Annotated[
        int,
        msgspec.Meta(
            **_INT63,
            description="Strictly increasing per (symbol, source); gaps mean lost ticks; "
            + _INT_LITERAL,
        ),
    ]
    price: Annotated[float, msgspec.Meta(**_FINITE, description="Trade price.")]
    size: (
        Annotated[
            float,
            msgspec.Meta(
                **_FINITE, description="Trade size; null when the source has no trade size."
            ),
        ]
        | None
    )
    bid: Annotated[float, msgspec.Meta(**_FINITE, description="Best bid when the trade happened.")]
    ask: Annotated[float, msgspec.Meta(**_FINITE, description="Best ask when the trade happened.")]
    bid_size: (
        Annotated[
            float, msgspec.Meta(**_FINITE, description="Size at the best bid; null when unknown.")
        ]
        | None
    )
    ask_size: (
        Annotated[
            float, msgspec.Meta(**_FINITE, description="Size at the best ask; null when unknown.")
        ]
        | None
    )
    source: Annotated[
        str, msgspec.Meta(pattern=NAME_PATTERN, description="Feed that produced the tick.")
    ]
    received_at: (
        Annotated[
            int,
            msgspec.Meta(
                **_INT63,
                description="When marketpipe's source received the tick: epoch microseconds, "
                "UTC; null or absent when unknown (a replayed file); " + _INT_LITERAL,
            ),
        ]
        | None
    ) = None

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


_decoder = msgspec.json.Decoder(Tick)


def tick_arrow_schema() -> Any:
    """The tick contract as an Arrow schema, derived from ``Tick``: str -> string, int ->
    int64, float -> float64; a field that may be null (``T | None``) is nullable, no other."""
    import pyarrow as pa
    from msgspec import inspect as mi

    arrow = {mi.StrType: pa.string(), mi.IntType: pa.int64(), mi.FloatType: pa.float64()}
    info = mi.type_info(Tick)
    assert isinstance(info, mi.StructType)
    fields = []
    for f in info.fields:
        kind, nullable = f.type, False
        if isinstance(kind, mi.UnionType):  # T | None
            (kind,) = [t for t in kind.types if not isinstance(t, mi.NoneType)]
            nullable = True
        while isinstance(kind, mi.Metadata):  # Annotated[T, Meta(...)]
            kind = kind.type
        fields.append(pa.field(f.name, arrow[type(kind)], nullable=nullable))
    return pa.schema(fields)


def decode_tick(payload: bytes | str) -> Tick:
    """Validate one wire message; raises ContractError on anything off-contract."""
    return _decoder.decode(payload)


@dataclass
class TickColumns:
    """A batch of ticks as parallel Python lists (not numpy arrays), in emission order.

    Every source builds one of these; ``encode`` is the one fast path to wire messages.
    ``source`` is one name for the whole batch or one per tick; so is ``received_at`` (one
    time, or one per tick; None: unknown, null on the wire).
    """

    symbol: list[str] = field(default_factory=list)
    event_time: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    size: list[float | None] = field(default_factory=list)
    bid: list[float] = field(default_factory=list)
    ask: list[float] = field(default_factory=list)
    bid_size: list[float | None] = field(default_factory=list)
    ask_size: list[float | None] = field(default_factory=list)
    source: str | list[str] = ""
    received_at: int | list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.event_time)

    def encode(self) -> list[bytes]:
        """Serialise every tick to its wire message."""
        dumps = orjson.dumps
        n = len(self.event_time)
        sources = [self.source] * n if isinstance(self.source, str) else self.source
        if isinstance(self.received_at, list):
            received: list[int | None] = self.received_at
        else:
            received = [self.received_at] * n
        return [
            dumps(
                {
                    "symbol": s,
                    "event_time": t,
                    "seq": q,
                    "price": p,
                    "size": z,
                    "bid": b,
                    "ask": a,
                    "bid_size": bz,
                    "ask_size": az,
                    "source": src,
                    "received_at": r,
                }
            )
            for s, t, q, p, z, b, a, bz, az, src, r in zip(
                self.symbol,
                self.event_time,
                self.seq,
                self.price,
                self.size,
                self.bid,
                self.ask,
                self.bid_size,
                self.ask_size,
                sources,
                received,
                strict=True,
            )
        ]

    def select(self, rows: Sequence[int]) -> TickColumns:
        """The given rows, in the given order."""
        source, received = self.source, self.received_at
        return TickColumns(
            symbol=[self.symbol[i] for i in rows],
            event_time=[self.event_time[i] for i in rows],
            seq=[self.seq[i] for i in rows],
            price=[self.price[i] for i in rows],
            size=[self.size[i] for i in rows],
            bid=[self.bid[i] for i in rows],
            ask=[self.ask[i] for i in rows],
            bid_size=[self.bid_size[i] for i in rows],
            ask_size=[self.ask_size[i] for i in rows],
            source=source if isinstance(source, str) else [source[i] for i in rows],
            received_at=received if not isinstance(received, list) else [received[i] for i in rows],
        )

    def keys(self) -> list[bytes]:
        """Kafka keys: the symbol, so each symbol stays in one partition, in order."""
        cache: dict[str, bytes] = {}
        return [cache.get(s) or cache.setdefault(s, s.encode()) for s in self.symbol]


def tick_json_schema() -> dict[str, Any]:
    definition: dict[str, Any] = msgspec.json.schema(Tick)["$defs"]["Tick"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **definition,
    }


def render_schema() -> bytes:
    """The committed schema file's exact bytes."""
    return (
        orjson.dumps(tick_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def export_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_schema())
    return path
