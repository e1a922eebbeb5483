"""Feature rows the sink tests write (tuples in the tables' column order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)


def bar(symbol: str, minute: int, close: float, written: datetime = T0) -> tuple[object, ...]:
    """A one-minute bar starting ``minute`` minutes after T0, in ``BARS.columns`` order."""
    start = T0 + timedelta(minutes=minute)
    last_tick = start + timedelta(seconds=59)
    return (symbol, 60, start, start + timedelta(minutes=1), 100.0, 101.0, 99.0, close,
            1000.0, 42, 100.2, 99.99, 100.01, 0.02, last_tick, written)  # fmt: skip
