"""Turning the text fields of one row of a tick file into contract values, or a reject.

How partial sources map onto the tick contract (also in docs/usage.md):
- quote-only rows (bid and ask, no trade): ``price`` is the mid, ``(bid + ask) / 2``, and ``size``
  is null: no trade happened, so volume-weighted features ignore them;
- trade-only rows (a trade, no quote): the quote is *locked at the trade price*, ``bid = ask =
  price``, with null sizes. Spread features are zero for such a source, and the quality checker
  must allow locked quotes for it.
Both are counted per run and printed in the replay summary, never applied silently. Market rules
(positive prices, bid < ask) are the quality checker's job: a row is rejected here only when it
cannot be represented in the contract (missing or unparseable values, non-finite numbers).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketpipe.contracts import TickColumns

#: Contract fields a file column can be mapped to (plus ``time``, the event time).
MAPPABLE = (
    "time", "symbol", "price", "size", "bid", "ask", "bid_size", "ask_size", "seq", "source",
)  # fmt: skip
PRICE_FROM_MID = "price_from_mid"
QUOTE_FROM_TRADE = "quote_from_trade"
MAX_KEPT_REJECTS = 5


class RowError(ValueError):
    """One row cannot become a tick; ``reason`` is a short code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def to_number(text: str | float | int | None, what: str, scale: float = 1.0) -> float:
    if text is None or text == "":
        raise RowError("missing", f"{what} is empty")
    try:
        value = float(text)
    except (ValueError, TypeError):
        raise RowError("number", f"{what} is not a number: {str(text)[:40]!r}") from None
    if not math.isfinite(value):
        raise RowError("number", f"{what} is not finite: {str(text)[:40]!r}")
    return value * scale if scale != 1.0 else value


def to_optional(text: str | float | int | None, what: str) -> float | None:
    return None if text is None or text == "" else to_number(text, what)


def _to_int(value: str | float | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (ValueError, TypeError):
        raise RowError("number", f"seq is not an integer: {str(value)[:40]!r}") from None


@dataclass
class Accounting:
    """Every row read ends up in exactly one of: published, skipped (by reason), rejected."""

    read: int = 0
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    derived: Counter[str] = field(default_factory=Counter)
    first_rejects: list[str] = field(default_factory=list)

    def reject(self, where: str, err: RowError) -> None:
        self.rejected[err.reason] += 1
        if len(self.first_rejects) < MAX_KEPT_REJECTS:
            self.first_rejects.append(f"{where}: {err.reason}: {err}")

    @property
    def balanced(self) -> bool:
        return self.read == self.published + sum(self.skipped.values()) + sum(
            self.rejected.values()
        )


Field = str | float | int | None


@dataclass
class RowBuilder:
    """Accumulates converted rows as columns; seq and source are filled in later if absent.

    Values arrive as text (CSV) or already typed (Parquet); ``where`` names the file and the
    unit (``line`` or ``row``) used in reject messages.
    """

    parse_time: Callable[[Any], int]
    accounting: Accounting
    where: str = "?"
    unit: str = "line"
    price_scale: float = 1.0
    columns: TickColumns = field(default_factory=TickColumns)
    file_seq: list[int] = field(default_factory=list)
    file_source: list[str] = field(default_factory=list)

    def reject(self, line: int, err: RowError) -> None:
        self.accounting.read += 1
        self.accounting.reject(f"{self.where} {self.unit} {line}", err)

    def add(
        self,
        line: int,
        symbol: str | None,
        time_text: Field,
        price: Field,
        size: Field,
        bid: Field,
        ask: Field,
        bid_size: Field = None,
        ask_size: Field = None,
        seq: Field = None,
        source: str | None = None,
    ) -> None:
        """Convert one row; on failure count a reject (with its line) and keep nothing of it."""
        acc = self.accounting
        acc.read += 1
        try:
            if not symbol:
                raise RowError("missing", "no symbol (give --symbol or map a symbol column)")
            if time_text is None or time_text == "":
                raise RowError("missing", "time is empty")
            try:
                event_time = self.parse_time(time_text)
            except (ValueError, OverflowError, TypeError) as exc:
                shown = str(time_text)[:40]
                raise RowError("time", f"unreadable time {shown!r}: {exc}") from None
            scale = self.price_scale
            b = to_number(bid, "bid", scale) if bid not in (None, "") else None
            a = to_number(ask, "ask", scale) if ask not in (None, "") else None
            p = to_number(price, "price", scale) if price not in (None, "") else None
            if p is None:
                if b is None or a is None:
                    raise RowError("missing", "no price and no complete bid/ask to take a mid of")
                p = (b + a) / 2.0
                acc.derived[PRICE_FROM_MID] += 1
            if b is None or a is None:
                if b is not None or a is not None:
                    raise RowError("missing", "only one side of the quote is present")
                b = a = p
                acc.derived[QUOTE_FROM_TRADE] += 1
            z = to_optional(size, "size")
            bz = to_optional(bid_size, "bid_size")
            az = to_optional(ask_size, "ask_size")
            q = _to_int(seq) if seq is not None else None
            if source is not None and not source:
                raise RowError("missing", "source is empty")
        except RowError as err:
            acc.reject(f"{self.where} {self.unit} {line}", err)
            return
        cols = self.columns
        cols.symbol.append(symbol)
        cols.event_time.append(event_time)
        cols.price.append(p)
        cols.size.append(z)
        cols.bid.append(b)
        cols.ask.append(a)
        cols.bid_size.append(bz)
        cols.ask_size.append(az)
        if q is not None:
            self.file_seq.append(q)
        if source is not None:
            self.file_source.append(source)

    def take(self) -> tuple[TickColumns, list[int] | None, list[str] | None]:
        """Hand over what was built and start afresh. A mapped seq or source column is present
        in every accepted row (a row missing it is rejected), so the lists line up."""
        cols = self.columns
        seq, src = self.file_seq or None, self.file_source or None
        self.columns, self.file_seq, self.file_source = TickColumns(), [], []
        return cols, seq, src
