from __future__ import annotations

import pytest

from marketpipe.ingest.rows import PRICE_FROM_MID, QUOTE_FROM_TRADE, Accounting, RowBuilder


def builder(scale: float = 1.0) -> RowBuilder:
    return RowBuilder(int, Accounting(), "f.csv", "line", scale)


def test_full_row() -> None:
    b = builder()
    b.add(1, "AAPL", "10", "101.5", "100", "101.4", "101.6", "300", "200")
    cols, seq, src = b.take()
    assert (cols.symbol, cols.event_time, cols.price, cols.size) == (
        ["AAPL"],
        [10],
        [101.5],
        [100.0],
    )
    assert (cols.bid, cols.ask, cols.bid_size, cols.ask_size) == (
        [101.4],
        [101.6],
        [300.0],
        [200.0],
    )
    assert seq is None
    assert src is None
    assert b.accounting.balanced is False  # read but not yet published
    b.accounting.published = 1
    assert b.accounting.balanced


def test_quote_only_row_prices_at_the_mid() -> None:
    b = builder()
    b.add(1, "EURUSD", "10", None, None, "1.1212", "1.1217")
    cols, _, _ = b.take()
    assert cols.price == [pytest.approx(1.12145)]
    assert cols.size == [None]
    assert b.accounting.derived[PRICE_FROM_MID] == 1


def test_trade_only_row_gets_a_locked_quote() -> None:
    b = builder()
    b.add(1, "ETHUSDT", "10", "1666.8", "26.062", None, None)
    cols, _, _ = b.take()
    assert (cols.bid, cols.ask, cols.bid_size, cols.ask_size) == (
        [1666.8],
        [1666.8],
        [None],
        [None],
    )
    assert b.accounting.derived[QUOTE_FROM_TRADE] == 1


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("AAPL", "10", "abc", "1", "1", "2"), "number"),
        (("AAPL", "10", "nan", "1", "1", "2"), "number"),
        (("AAPL", "10", "1e999", "1", "1", "2"), "number"),
        (("AAPL", "x", "1", "1", "1", "2"), "time"),
        (("AAPL", "", "1", "1", "1", "2"), "missing"),
        (("", "10", "1", "1", "1", "2"), "missing"),
        (("AAPL", "10", None, None, "1", None), "missing"),  # one-sided quote, no price
        (("AAPL", "10", "1", None, "1", None), "missing"),  # one-sided quote
        (("AAPL", "10", None, None, None, None), "missing"),
    ],
)
def test_bad_rows_are_rejected_with_reason_and_line(row: tuple[str, ...], reason: str) -> None:
    b = builder()
    b.add(7, *row)  # type: ignore[arg-type]
    cols, _, _ = b.take()
    assert len(cols) == 0
    assert b.accounting.rejected == {reason: 1}
    assert b.accounting.first_rejects[0].startswith(f"f.csv line 7: {reason}: ")
    assert b.accounting.balanced


def test_mapped_seq_and_source_must_be_present() -> None:
    b = builder()
    b.add(1, "A", "1", "1", None, None, None, seq="5", source="feed")
    b.add(2, "A", "2", "1", None, None, None, seq="x", source="feed")
    b.add(3, "A", "3", "1", None, None, None, seq="6", source="")
    _cols, seq, src = b.take()
    assert seq == [5]
    assert src == ["feed"]
    assert b.accounting.rejected == {"number": 1, "missing": 1}


def test_price_scale_applies_to_prices_only() -> None:
    b = builder(scale=0.0001)
    b.add(1, "X", "1", "11212", "5", "11211", "11213")
    cols, _, _ = b.take()
    assert cols.price == [pytest.approx(1.1212)]
    assert cols.size == [5.0]


def test_only_the_first_rejects_are_kept_verbatim() -> None:
    b = builder()
    for line in range(20):
        b.add(line, "A", "1", "bad", None, None, None)
    assert sum(b.accounting.rejected.values()) == 20
    assert len(b.accounting.first_rejects) == 5
