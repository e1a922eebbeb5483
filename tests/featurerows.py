"""Feature rows the sink tests write (tuples in the tables' column order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from marketpipe.sinks.tables import BARS, PROGRESS_KEPT, WINDOW_FEATURES, arrow_schema

T0 = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)


def bar(symbol: str, minute: int, close: float, written: datetime = T0) -> tuple[object, ...]:
    """A one-minute bar starting ``minute`` minutes after T0, in ``BARS.columns`` order."""
    start = T0 + timedelta(minutes=minute)
    last_tick = start + timedelta(seconds=59)
    return (symbol, 60, start, start + timedelta(minutes=1), 100.0, 101.0, 99.0, close,
            1000.0, 42, 100.2, 99.99, 100.01, 0.02, last_tick, written)  # fmt: skip


def check_rows_ending_and_progress(sink: Any) -> None:
    """What the features job reads back from its first hot sink (DuckDB or PostgreSQL): closed
    windows by end, and the export progress per checkpoint and micro-batch."""
    sink.upsert(BARS, [bar("AAPL", m, 100.0 + m) for m in range(5)])
    minute = timedelta(minutes=1)
    got = sink.rows_ending(BARS, T0 + minute, T0 + 3 * minute, minute)
    assert got.schema == arrow_schema(BARS)
    assert got.column("close").to_pylist() == [101.0, 102.0]  # ends in (T0+1 min, T0+3 min]
    assert got.column("window_start").to_pylist()[0] == T0 + timedelta(minutes=1)
    none = sink.rows_ending(WINDOW_FEATURES, T0, T0 + timedelta(hours=1), minute)
    assert (none.num_rows, none.schema) == (0, arrow_schema(WINDOW_FEATURES))

    cp = "/checkpoints/features"
    assert sink.progress_before(cp, 0) is None
    sink.record_progress(cp, 0, 10, 5, 6)
    sink.record_progress(cp, 1, 20, 8, 9)
    assert sink.progress_before(cp, 1) == (10, 5, 6)  # a replay of batch 1 sees batch 0's
    assert sink.progress_before(cp, 7) == (20, 8, 9)
    sink.record_progress(cp, 1, 21, 9, 11)  # the replayed batch records again
    assert sink.progress_before(cp, 2) == (21, 9, 11)
    assert sink.progress_before("/checkpoints/other", 7) is None
    sink.record_progress(cp, PROGRESS_KEPT + 1, 30, 10, 20)  # older rows go
    assert sink.progress_before(cp, 1) is None
    assert sink.progress_before(cp, PROGRESS_KEPT) == (21, 9, 11)
