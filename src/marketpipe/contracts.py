"""The wire contract: one record type, a trade with its prevailing top-of-book quote.

Messages on ``ticks.raw`` and ``ticks.valid`` are UTF-8 JSON objects with exactly the fields of
``Tick``; the Kafka key is the symbol. ``contracts/tick.schema.json`` is generated from ``Tick``
(``marketpipe contracts``) and a test keeps the committed copy equal to it.

Two paths exist on purpose: ``Tick`` validates (used at trust boundaries and in tests) and
``TickColumns.encode`` serialises whole batches fast for producers; a test checks they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID = "https://marketpipe.dev/schemas/tick.schema.json"
SCHEMA_PATH = Path("contracts") / "tick.schema.json"
#: Symbols and sources: 1-64 printable ASCII characters that are safe in keys and paths.
NAME_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+-]{0,63}$"

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
)


class Tick(BaseModel):
    """One trade and the quote prevailing when it happened."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        title="Tick",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    symbol: str = Field(
        pattern=NAME_PATTERN,
        description="Instrument (letters, digits and . _ : / = ^ + -); also the Kafka key.",
    )
    event_time: int = Field(
        ge=0, lt=2**63, description="When the trade happened: epoch microseconds, UTC."
    )
    seq: int = Field(
        ge=0,
        lt=2**63,
        description="Strictly increasing per (symbol, source); gaps mean lost ticks.",
    )
    price: float = Field(description="Trade price.")
    size: float | None = Field(description="Trade size; null when the source has no trade size.")
    bid: float = Field(description="Best bid when the trade happened.")
    ask: float = Field(description="Best ask when the trade happened.")
    bid_size: float | None = Field(description="Size at the best bid; null when unknown.")
    ask_size: float | None = Field(description="Size at the best ask; null when unknown.")
    source: str = Field(pattern=NAME_PATTERN, description="Feed that produced the tick.")

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())


def decode_tick(payload: bytes | str) -> Tick:
    """Validate one wire message; raises pydantic.ValidationError on anything off-contract."""
    return Tick.model_validate_json(payload)


@dataclass
class TickColumns:
    """A batch of ticks as parallel Python lists (not numpy arrays), in emission order.

    Every source builds one of these; ``encode`` is the one fast path to wire messages.
    ``source`` is one name for the whole batch or one per tick.
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

    def __len__(self) -> int:
        return len(self.event_time)

    def encode(self) -> list[bytes]:
        """Serialise every tick to its wire message."""
        dumps = orjson.dumps
        n = len(self.event_time)
        sources = [self.source] * n if isinstance(self.source, str) else self.source
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
                }
            )
            for s, t, q, p, z, b, a, bz, az, src in zip(
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
                strict=True,
            )
        ]

    def select(self, rows: Sequence[int]) -> TickColumns:
        """The given rows, in the given order."""
        source = self.source
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
        )

    def keys(self) -> list[bytes]:
        """Kafka keys: the symbol, so each symbol stays in one partition, in order."""
        cache: dict[str, bytes] = {}
        return [cache.get(s) or cache.setdefault(s, s.encode()) for s in self.symbol]

    def timestamps_ms(self) -> list[int]:
        """Kafka timestamps: the event time."""
        return [t // 1000 for t in self.event_time]


def tick_json_schema() -> dict[str, Any]:
    schema = Tick.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render_schema() -> bytes:
    """The committed schema file's exact bytes."""
    return (
        orjson.dumps(tick_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def export_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_schema())
    return path
