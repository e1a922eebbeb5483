"""Sliding windows combined from buckets equal the same windows computed from their ticks."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.windows import WINDOW_SCHEMA, combine, span, window_starts

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Tick = tuple[str, int, float]  # symbol, event time (us), price


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def make_buckets(ticks: list[Tick], bucket_us: int) -> pa.Table:
    """What Spark's bucket aggregation gives, computed the plain way."""
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for symbol, t, price in sorted(ticks):
        groups.setdefault((symbol, t - t % bucket_us), []).append((t, price))
    rows = []
    for (symbol, start), members in sorted(groups.items()):
        prices = [p for _, p in members]
        returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
        mean = sum(returns) / len(returns) if returns else 0.0
        rows.append({
            "symbol": symbol, "window_start": at(start), "open": prices[0], "close": prices[-1],
            "trades": len(prices), "m2": sum((r - mean) ** 2 for r in returns),
            "last_event_time": at(members[-1][0]),
        })  # fmt: skip
    return pa.Table.from_pylist(rows)


def brute_force(ticks: list[Tick], length_us: int, slide_us: int) -> dict[tuple[str, int], dict]:
    """Every window straight from its ticks, two passes over the returns."""
    out: dict[tuple[str, int], dict] = {}
    for symbol in {s for s, _, _ in ticks}:
        mine = sorted((t, p) for s, t, p in ticks if s == symbol)
        for ws in {w for t, _ in mine for w in window_starts(t, length_us, slide_us)}:
            prices = [p for t, p in mine if ws <= t < ws + length_us]
            returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
            volatility = None
            if len(prices) >= 3:
                mean = sum(returns) / len(returns)
                volatility = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
            last = max(t for t, _ in mine if ws <= t < ws + length_us)
            out[(symbol, ws)] = {
                "ticks": len(prices), "log_return": math.log(prices[-1] / prices[0]),
                "volatility": volatility, "last": last,
            }  # fmt: skip
    return out


ticks_strategy = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(min_value=0, max_value=40 * US),
        st.floats(min_value=1.0, max_value=1000.0),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda t: (t[0], t[1]),  # one tick per symbol and microsecond: a total order
)


@given(ticks_strategy, st.sampled_from([(60, 10), (10, 5), (8, 2), (6, 4), (5, 5)]))
def test_combined_windows_equal_the_windows_of_their_ticks(
    ticks: list[Tick], sliding: tuple[int, int]
) -> None:
    length, slide = sliding
    bucket_us = math.gcd(length, slide) * US
    got = combine(make_buckets(ticks, bucket_us), length, slide)
    assert got.schema == WINDOW_SCHEMA
    want = brute_force(ticks, length * US, slide * US)
    rows = {(r["symbol"], round(r["window_start"].timestamp() * US)): r for r in got.to_pylist()}
    assert rows.keys() == want.keys()
    for key, w in want.items():
        r = rows[key]
        assert round(r["window_end"].timestamp() * US) == key[1] + length * US
        assert r["ticks"] == w["ticks"]
        assert round(r["last_event_time"].timestamp() * US) == w["last"]
        assert r["log_return"] == pytest.approx(w["log_return"], rel=1e-9, abs=1e-15)
        if w["volatility"] is None:
            assert r["volatility"] is None
        else:
            assert r["volatility"] == pytest.approx(w["volatility"], rel=1e-9, abs=1e-15)


def test_only_the_windows_holding_a_touched_bucket() -> None:
    ticks = [("A", s * US, 100.0 + s) for s in range(0, 40, 3)]
    found = make_buckets(ticks, 10 * US)
    touched = found.slice(1, 1)  # the bucket [10, 20)
    starts = sorted(round(r["window_start"].timestamp()) for r in
                    combine(found, 30, 10, touched).to_pylist())  # fmt: skip
    assert starts == [-10, 0, 10]  # the three 30 s windows holding [10, 20)


def test_span_covers_every_bucket_of_the_touched_windows() -> None:
    earliest, latest = span([25 * US, 41 * US], 60 * US, 10 * US)
    assert (earliest, latest) == (-30 * US, 100 * US)  # windows [-30, 30) ... [40, 100)
