"""Bars and window buckets folded micro-batch by micro-batch (``aggregate.step``): against values
computed by hand, and against ``validate``'s DuckDB SQL (an independent statement of the same
definitions) over the same ticks however they are cut into batches."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest

from marketpipe.features.aggregate import (
    BAR_COLUMNS,
    BUCKET_COLUMNS,
    OpenWindows,
    Step,
    Windows,
    step,
)
from marketpipe.features.outputs import AGGREGATED, split
from marketpipe.features.validate import bars_sql, window_features_sql
from marketpipe.features.windows import combine
from marketpipe.sinks.tables import BARS, WINDOW_BUCKETS

T0 = 1_709_908_200_000_000  # 2024-03-08 14:30:00 UTC, microseconds
SEC = 1_000_000

Tick = dict[str, object]


def tick(symbol: str, t: int, seq: int, price: float, size: float | None = 1.0,
         bid: float | None = None, ask: float | None = None) -> Tick:  # fmt: skip
    return {"symbol": symbol, "event_time": t, "seq": seq, "price": price, "size": size,
            "bid": bid if bid is not None else price - 0.01,
            "ask": ask if ask is not None else price + 0.01}  # fmt: skip


SCHEMA = pa.schema(
    [("symbol", pa.string()), ("event_time", pa.int64()), ("seq", pa.int64()),
     ("price", pa.float64()), ("size", pa.float64()), ("bid", pa.float64()),
     ("ask", pa.float64())]
)  # fmt: skip
assert tuple(SCHEMA.names) == AGGREGATED


def table(ticks: list[Tick]) -> pa.Table:
    return pa.Table.from_pylist(ticks, schema=SCHEMA)


def fold(batches: list[list[Tick]], windows: Windows, delay_us: int | None = None) -> list[Step]:
    """Each batch folded in turn, as the job does (``delay_us`` None: no watermark)."""
    steps, open_, seen = [], OpenWindows.empty(), None
    for batch in batches:
        done = step(table(batch), open_, windows, seen, delay_us)
        steps.append(done)
        open_, seen = done.open, done.base_us
    return steps


def latest(steps: list[Step]) -> dict[tuple[object, ...], dict[str, object]]:
    """Every window's row as the last batch that touched it left it (what upserts keep)."""
    out: dict[tuple[object, ...], dict[str, object]] = {}
    for s in steps:
        for r in s.rows.to_pylist():
            out[(r["kind"], r["interval_seconds"], r["symbol"], r["window_start"])] = r
    return out


def ts(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, UTC)


def test_one_second_bars_by_hand() -> None:
    ticks = [
        # Two ticks share a microsecond: seq decides which is first and last.
        tick("AAPL", T0 + 100, 2, 10.0, 1.0, 9.9, 10.1),
        tick("AAPL", T0 + 100, 1, 11.0, 3.0, 10.9, 11.1),
        tick("AAPL", T0 + 900_000, 3, 12.0, None, 11.8, 12.2),  # quote-only: no size
        tick("AAPL", T0 + SEC + 5, 4, 13.0, 2.0),
        tick("MSFT", T0 + 500, 1, 415.0, 10.0, 414.9, 415.1),
    ]
    rows = step(table(ticks), OpenWindows.empty(), Windows((1,), None)).rows
    got = [{c: r[c] for c in BAR_COLUMNS} for r in rows.to_pylist()]
    assert got == [
        {"symbol": "AAPL", "interval_seconds": 1, "window_start": ts(T0),
         "window_end": ts(T0 + SEC), "open": 11.0, "high": 12.0, "low": 10.0, "close": 12.0,
         "volume": 4.0, "trades": 3, "vwap": pytest.approx((11.0 * 3 + 10.0 * 1) / 4),
         "last_bid": 11.8, "last_ask": 12.2, "mean_spread": pytest.approx((0.2 + 0.2 + 0.4) / 3),
         "last_event_time": ts(T0 + 900_000)},  # the newest tick in the bar
        {"symbol": "AAPL", "interval_seconds": 1, "window_start": ts(T0 + SEC),
         "window_end": ts(T0 + 2 * SEC), "open": 13.0, "high": 13.0, "low": 13.0,
         "close": 13.0, "volume": 2.0, "trades": 1, "vwap": 13.0, "last_bid": 12.99,
         "last_ask": 13.01, "mean_spread": pytest.approx(0.02),
         "last_event_time": ts(T0 + SEC + 5)},
        {"symbol": "MSFT", "interval_seconds": 1, "window_start": ts(T0),
         "window_end": ts(T0 + SEC), "open": 415.0, "high": 415.0, "low": 415.0,
         "close": 415.0, "volume": 10.0, "trades": 1, "vwap": 415.0, "last_bid": 414.9,
         "last_ask": 415.1, "mean_spread": pytest.approx(0.2), "last_event_time": ts(T0 + 500)},
    ]  # fmt: skip
    assert rows.column("m2").null_count == rows.num_rows  # bars have none


def window_features(ticks: list[Tick], length_s: int, slide_s: int) -> dict[tuple[int, int], dict[str, object]]:  # fmt: skip  # noqa: E501
    """Sliding windows as the job makes them (buckets, combined), by (start, end) in us."""
    folded = step(table(ticks), OpenWindows.empty(), Windows.of([], (length_s, slide_s))).rows
    found = {name: rows for name, _, rows in split(folded)}["window_buckets"]
    rows = combine(found, length_s, slide_s).to_pylist()
    return {(us(r["window_start"]), us(r["window_end"])): r for r in rows}


def us(value: datetime) -> int:
    return round(value.timestamp() * 1e6)


def sample_sd(prices: list[float]) -> float:
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))


def test_sliding_window_log_return_and_volatility() -> None:
    prices = [100.0, 101.0, 99.0, 102.0]
    ticks = [tick("X", T0 + i * SEC, i + 1, p) for i, p in enumerate(prices)]
    got = window_features(ticks, 10, 5)
    full = got[(T0, T0 + 10 * SEC)]
    assert us(full["last_event_time"]) == T0 + 3 * SEC  # type: ignore[arg-type]
    assert full["ticks"] == 4
    assert full["log_return"] == pytest.approx(math.log(102.0 / 100.0))
    assert full["volatility"] == pytest.approx(sample_sd(prices))
    earlier = got[(T0 - 5 * SEC, T0 + 5 * SEC)]
    assert earlier["ticks"] == 4  # the 60/10-style overlap: both windows hold all four ticks


def test_windows_across_buckets_count_the_returns_between_them() -> None:
    """Ticks spread over four 2 s buckets of a 8 s window (one bucket empty, one with a single
    tick, one out of order): the same as one pass over the window's ticks."""
    at = [0.1, 0.5, 1.9, 2.2, 6.0, 6.5, 7.99, 1.2]  # seconds after T0; bucket [4, 6) empty
    prices = [100.0, 100.5, 99.8, 101.2, 100.9, 101.7, 101.1, 100.1]
    ticks = [
        tick("Z", T0 + int(a * SEC), i + 1, p)
        for i, (a, p) in enumerate(zip(at, prices, strict=True))
    ]
    in_order = [p for _, p in sorted(zip(at, prices, strict=True))]
    got = window_features(ticks, 8, 2)  # buckets of gcd(8, 2) = 2 s
    full = got[(T0, T0 + 8 * SEC)]
    assert full["ticks"] == 8
    assert full["log_return"] == pytest.approx(math.log(in_order[-1] / in_order[0]), rel=1e-12)
    assert full["volatility"] == pytest.approx(sample_sd(in_order), rel=1e-12)
    # The window starting 4 s later holds the two last buckets' three ticks.
    later = got[(T0 + 4 * SEC, T0 + 12 * SEC)]
    assert later["ticks"] == 3
    assert later["volatility"] == pytest.approx(sample_sd([100.9, 101.7, 101.1]), rel=1e-12)


def test_volatility_is_null_below_three_ticks() -> None:
    ticks = [tick("Y", T0, 1, 10.0), tick("Y", T0 + SEC, 2, 11.0)]
    rows = list(window_features(ticks, 10, 10).values())
    assert [(r["ticks"], r["volatility"]) for r in rows] == [(2, None)]
    assert rows[0]["log_return"] == pytest.approx(math.log(1.1))


def test_something_must_be_asked_for() -> None:
    with pytest.raises(ValueError, match="no bar interval"):
        Windows.of([], None)


def test_split_hands_each_table_its_rows() -> None:
    ticks = [tick("X", T0 + i * SEC, i + 1, 10.0 + i) for i in range(3)]
    batch = step(table(ticks), OpenWindows.empty(), Windows.of([1, 60], (10, 5))).rows
    parts = {name: (table.name, rows) for name, table, rows in split(batch)}
    assert list(parts) == ["bars_1s", "bars_60s", "window_buckets"]
    assert parts["bars_1s"][0] == parts["bars_60s"][0] == "bars"
    assert parts["bars_1s"][1].num_rows == 3
    assert parts["bars_60s"][1].num_rows == 1
    assert parts["bars_60s"][1].column_names == list(BARS.columns[:-1])
    assert parts["window_buckets"][0] == "window_buckets"
    assert parts["window_buckets"][1].column_names == list(WINDOW_BUCKETS.columns[:-1])
    assert parts["window_buckets"][1].num_rows == 1  # the 5 s bucket of all three ticks


def random_ticks(rng: random.Random, n: int, span_s: int) -> list[Tick]:
    """Ticks of three symbols over ``span_s`` seconds: shared microseconds, quote-only ticks
    (no size), and a random arrival order."""
    out = []
    for i in range(n):
        t = T0 + rng.randrange(span_s * SEC // 1000) * 1000  # coarse: ties happen
        price = round(100 * math.exp(rng.gauss(0, 0.01)), 4)
        size = None if rng.random() < 0.1 else float(rng.randint(1, 500))
        out.append(tick(rng.choice("ABC"), t, i, price, size, price - 0.02, price + 0.03))
    rng.shuffle(out)
    return out


def expected(ticks: list[Tick], intervals: list[int], sliding: tuple[int, int]) -> dict[str, dict[tuple[object, ...], dict[str, object]]]:  # fmt: skip  # noqa: E501
    """Bars per interval and sliding windows, by DuckDB over all the ticks at once."""
    con = duckdb.connect()
    con.register("ticks", table(ticks))
    out: dict[str, dict[tuple[object, ...], dict[str, object]]] = {}
    for n in intervals:
        rows = con.sql(bars_sql(n)).to_arrow_table().to_pylist()
        out[f"bars_{n}s"] = {(r["symbol"], r["window_start"]): r for r in rows}
    rows = con.sql(window_features_sql(*sliding)).to_arrow_table().to_pylist()
    out["window_features"] = {(r["symbol"], r["window_start"]): r for r in rows}
    return out


def close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("seed", range(6))
def test_any_cut_into_batches_gives_what_one_pass_over_all_ticks_gives(seed: int) -> None:
    """Folded in random batches, arriving out of order (no watermark: nothing dropped), the
    last row of every window equals DuckDB's over all the ticks."""
    rng = random.Random(seed)
    ticks = random_ticks(rng, 600, 30)
    cuts = sorted(rng.sample(range(1, len(ticks)), rng.randint(1, 12)))
    batches = [ticks[a:b] for a, b in itertools.pairwise([0, *cuts, len(ticks)])]
    intervals, sliding = [1, 5], (10, 4)
    got = latest(fold(batches, Windows.of(intervals, sliding)))
    want = expected(ticks, intervals, sliding)
    for n in intervals:
        mine = {(k[2], us(k[3])): r for k, r in got.items() if k[:2] == ("bars", n)}  # type: ignore[arg-type]
        assert mine.keys() == want[f"bars_{n}s"].keys()
        for key, row in mine.items():
            theirs = want[f"bars_{n}s"][key]
            for c in BAR_COLUMNS:
                value = us(row[c]) if isinstance(row[c], datetime) else row[c]  # type: ignore[arg-type]
                assert close(value, theirs[c]), (n, key, c, value, theirs[c])
    buckets = pa.Table.from_pylist(
        [{c: r[c] for c in BUCKET_COLUMNS} for k, r in got.items() if k[0] == "bucket"]
    )
    windows = combine(buckets, *sliding).to_pylist()
    assert len(windows) == len(want["window_features"])
    for row in windows:
        theirs = want["window_features"][(row["symbol"], us(row["window_start"]))]
        for c in ("log_return", "volatility", "ticks"):
            assert close(row[c], theirs[c]), (row["symbol"], row["window_start"], c)


def test_a_tick_behind_the_watermark_is_dropped_from_closed_windows_only() -> None:
    """Watermark = newest event time of the earlier batches - delay: a copy for a window ending
    at or before it is dropped (and counted); the same tick still counts in a longer window."""
    windows = Windows((1, 10), None)
    first = [tick("X", T0 + 12 * SEC, 1, 10.0)]
    late = [tick("X", T0 + 9 * SEC + 500_000, 2, 11.0)]  # its 1 s bar ended at 10 s
    steps = fold([first, late], windows, delay_us=2 * SEC)  # watermark: 10 s
    # Both its windows, the 1 s bar [9, 10) and the 10 s bar [0, 10), end at the watermark.
    assert steps[1].dropped == 2
    assert steps[1].rows.num_rows == 0
    on_time = [tick("X", T0 + 10 * SEC + 1, 3, 12.0)]
    steps = fold([first, on_time], windows, delay_us=2 * SEC)
    assert steps[1].dropped == 0
    assert {(r["interval_seconds"], r["trades"]) for r in steps[1].rows.to_pylist()} == {
        (1, 1),
        (10, 2),
    }


def test_closed_windows_are_forgotten_and_open_ones_kept() -> None:
    windows = Windows.of([1], (10, 10))
    ticks = [tick("X", T0 + i * SEC, i, 10.0 + i) for i in range(12)]
    done = fold([ticks], windows, delay_us=SEC)[-1]  # watermark after it: 10 s
    kept = done.open.partials.to_pylist()
    assert {(r["kind"], r["start_us"] - T0) for r in kept} == {
        ("bars", 10 * SEC), ("bars", 11 * SEC), ("bucket", 10 * SEC),
    }  # fmt: skip
    # The open bucket keeps its two ticks, for its m2 when more arrive.
    assert done.open.points.column("event_time").to_pylist() == [T0 + 10 * SEC, T0 + 11 * SEC]


def test_windows_stay_open_until_the_base_given_passes_them() -> None:
    """The job's base trails its slowest partition: windows the batch's own newest tick would
    close stay open until that base passes them, and the next batch's ticks still reach them."""
    windows = Windows.of([1], None)
    ticks = [tick("X", T0 + i * SEC, i, 10.0 + i) for i in range(12)]
    done = step(table(ticks), OpenWindows.empty(), windows, None, SEC, base_us=T0 + 3 * SEC)
    assert done.base_us == T0 + 3 * SEC
    starts = sorted(r["start_us"] - T0 for r in done.open.partials.to_pylist())
    assert starts == [s * SEC for s in range(2, 12)]  # those ending after T0 + 2 s
    late = step(table([tick("Y", T0 + 2 * SEC, 1, 5.0)]), done.open, windows, done.base_us, SEC)
    assert late.dropped == 0
    assert late.rows.column("symbol").to_pylist() == ["Y"]
    assert late.base_us == T0 + 3 * SEC  # never below the base before


def test_an_empty_batch_changes_nothing() -> None:
    windows = Windows.of([1], (10, 5))
    first = fold([[tick("X", T0, 1, 10.0), tick("X", T0 + SEC, 2, 11.0)]], windows)[0]
    again = step(table([]), first.open, windows, first.base_us)
    assert again.rows.num_rows == 0
    assert again.dropped == 0
    assert again.open.partials.equals(first.open.partials)
    assert again.base_us == first.base_us
