"""Feature transforms against values computed by hand."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import orjson
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812
from pyspark.testing import assertDataFrameEqual

from marketpipe.features.job import split
from marketpipe.features.transforms import (
    BAR_COLUMNS,
    BUCKET_COLUMNS,
    bars,
    buckets,
    features,
    parse_ticks,
)
from marketpipe.features.windows import combine
from marketpipe.sinks.tables import BARS, WINDOW_BUCKETS

T0 = 1_709_908_200_000_000  # 2024-03-08 14:30:00 UTC, microseconds
SEC = 1_000_000


def kafka_rows(spark: SparkSession, ticks: list[dict[str, object]]) -> DataFrame:
    rows = [
        (str(t["symbol"]).encode(), orjson.dumps(t), "ticks.valid", 0, i, datetime.now(UTC), 0)
        for i, t in enumerate(ticks)
    ]
    return spark.createDataFrame(
        rows,
        "key binary, value binary, topic string, partition int, offset long, "
        "timestamp timestamp, timestampType int",
    )


def tick(symbol: str, t: int, seq: int, price: float, size: float | None = 1.0,
         bid: float | None = None, ask: float | None = None) -> dict[str, object]:  # fmt: skip
    return {"symbol": symbol, "event_time": t, "seq": seq, "price": price, "size": size,
            "bid": bid if bid is not None else price - 0.01,
            "ask": ask if ask is not None else price + 0.01,
            "bid_size": None, "ask_size": None, "source": "test"}  # fmt: skip


def ts(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, UTC).replace(tzinfo=None)


def test_parse_keeps_every_field_and_adds_event_ts(spark: SparkSession) -> None:
    parsed = parse_ticks(kafka_rows(spark, [tick("AAPL", T0 + 123, 7, 189.5, None)]))
    row = parsed.collect()[0]
    assert (row.symbol, row.event_time, row.seq, row.price, row.size) == (
        "AAPL",
        T0 + 123,
        7,
        189.5,
        None,
    )
    assert row.event_ts == ts(T0 + 123)


def test_one_second_bars_by_hand(spark: SparkSession) -> None:
    ticks = [
        # Two ticks share a microsecond: seq decides which is first and last.
        tick("AAPL", T0 + 100, 2, 10.0, 1.0, 9.9, 10.1),
        tick("AAPL", T0 + 100, 1, 11.0, 3.0, 10.9, 11.1),
        tick("AAPL", T0 + 900_000, 3, 12.0, None, 11.8, 12.2),  # quote-only: no size
        tick("AAPL", T0 + SEC + 5, 4, 13.0, 2.0),
        tick("MSFT", T0 + 500, 1, 415.0, 10.0, 414.9, 415.1),
    ]
    got = bars(parse_ticks(kafka_rows(spark, ticks)), 1)
    expected = spark.createDataFrame(
        [
            (
                "AAPL",
                1,
                ts(T0),
                ts(T0 + SEC),
                11.0,
                12.0,
                10.0,
                12.0,
                4.0,
                3,
                (11.0 * 3 + 10.0 * 1) / 4,
                11.8,
                12.2,
                (0.2 + 0.2 + 0.4) / 3,
                ts(T0 + 900_000),  # last_event_time: the newest tick in the bar
            ),
            (
                "AAPL",
                1,
                ts(T0 + SEC),
                ts(T0 + 2 * SEC),
                13.0,
                13.0,
                13.0,
                13.0,
                2.0,
                1,
                13.0,
                12.99,
                13.01,
                0.02,
                ts(T0 + SEC + 5),
            ),
            (
                "MSFT",
                1,
                ts(T0),
                ts(T0 + SEC),
                415.0,
                415.0,
                415.0,
                415.0,
                10.0,
                1,
                415.0,
                414.9,
                415.1,
                0.2,
                ts(T0 + 500),
            ),
        ],
        got.schema,
    )
    assertDataFrameEqual(got, expected, rtol=1e-9)


def window_features(
    spark: SparkSession, ticks: list[dict[str, object]], length_s: int, slide_s: int
) -> dict[tuple[int, int], dict[str, object]]:
    """Sliding windows as the job makes them (Spark buckets, combined), by (start, end) in
    microseconds."""
    found = buckets(parse_ticks(kafka_rows(spark, ticks)), length_s, slide_s).toArrow()
    rows = combine(found, length_s, slide_s).to_pylist()
    return {(us(r["window_start"]), us(r["window_end"])): r for r in rows}


def us(value: datetime) -> int:
    return round(value.timestamp() * 1e6)


def sample_sd(prices: list[float]) -> float:
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))


def test_sliding_window_log_return_and_volatility(spark: SparkSession) -> None:
    prices = [100.0, 101.0, 99.0, 102.0]
    ticks = [tick("X", T0 + i * SEC, i + 1, p) for i, p in enumerate(prices)]
    got = window_features(spark, ticks, 10, 5)
    full = got[(T0, T0 + 10 * SEC)]
    assert us(full["last_event_time"]) == T0 + 3 * SEC  # type: ignore[arg-type]
    assert full["ticks"] == 4
    assert full["log_return"] == pytest.approx(math.log(102.0 / 100.0))
    assert full["volatility"] == pytest.approx(sample_sd(prices))
    earlier = got[(T0 - 5 * SEC, T0 + 5 * SEC)]
    assert earlier["ticks"] == 4  # the 60/10-style overlap: both windows hold all four ticks


def test_windows_across_buckets_count_the_returns_between_them(spark: SparkSession) -> None:
    """Ticks spread over four 2 s buckets of a 8 s window (one bucket empty, one with a single
    tick, two out of order on the wire): the same as one pass over the window's ticks."""
    at = [0.1, 0.5, 1.9, 2.2, 6.0, 6.5, 7.99, 1.2]  # seconds after T0; bucket [4, 6) empty
    prices = [100.0, 100.5, 99.8, 101.2, 100.9, 101.7, 101.1, 100.1]
    ticks = [
        tick("Z", T0 + int(a * SEC), i + 1, p)
        for i, (a, p) in enumerate(zip(at, prices, strict=True))
    ]
    in_order = [p for _, p in sorted(zip(at, prices, strict=True))]
    got = window_features(spark, ticks, 8, 2)  # buckets of gcd(8, 2) = 2 s
    full = got[(T0, T0 + 8 * SEC)]
    assert full["ticks"] == 8
    assert full["log_return"] == pytest.approx(math.log(in_order[-1] / in_order[0]), rel=1e-12)
    assert full["volatility"] == pytest.approx(sample_sd(in_order), rel=1e-12)
    # The window starting 4 s later holds the two last buckets' three ticks.
    later = got[(T0 + 4 * SEC, T0 + 12 * SEC)]
    assert later["ticks"] == 3
    assert later["volatility"] == pytest.approx(sample_sd([100.9, 101.7, 101.1]), rel=1e-12)


def test_volatility_is_null_below_three_ticks(spark: SparkSession) -> None:
    ticks = [tick("Y", T0, 1, 10.0), tick("Y", T0 + SEC, 2, 11.0)]
    rows = list(window_features(spark, ticks, 10, 10).values())
    assert [(r["ticks"], r["volatility"]) for r in rows] == [(2, None)]
    assert rows[0]["log_return"] == pytest.approx(math.log(1.1))


def test_spark_conf_setting_reaches_the_session(spark: SparkSession) -> None:
    """MARKETPIPE_FEATURES__SPARK_CONF (the chart passes the driver pod's name this way)."""
    assert spark.conf.get("spark.marketpipe.probe") == "yes"
    assert spark.sparkContext.master == "local[2]"  # not under spark-submit: cfg.master


def test_one_aggregation_gives_every_output_as_the_separate_ones_would(spark: SparkSession) -> None:
    """The streaming job runs ``features`` (all outputs in one groupBy); the backfill and the
    tests above use ``bars``/``buckets``. Both must give the same rows."""
    prices = [100.0, 101.0, 99.0, 102.0, 98.5, 100.5]
    ticks = [tick("X", T0 + i * 700_000, i + 1, p, float(i)) for i, p in enumerate(prices)]
    ticks.append(tick("Y", T0 + 3 * SEC, 1, 50.0, 2.0))
    parsed = parse_ticks(kafka_rows(spark, ticks))
    combined = features(parsed, [1, 2], (4, 2))
    assert {r.kind for r in combined.collect()} == {"bars", "bucket"}
    got_bars = combined.where("kind = 'bars'").select(*BAR_COLUMNS)
    assertDataFrameEqual(got_bars, bars(parsed, 1).unionByName(bars(parsed, 2)), rtol=1e-12)
    got_buckets = combined.where("kind = 'bucket'").select(*BUCKET_COLUMNS)
    assertDataFrameEqual(got_buckets, buckets(parsed, 4, 2), rtol=1e-12)
    # Every tick is in one bar per interval and in one bucket (gcd(4, 2) = 2 s).
    counts = {
        (r.kind, r.interval_seconds): r.n
        for r in combined.groupBy("kind", "interval_seconds")
        .agg(F.sum("trades").alias("n"))
        .collect()
    }
    assert counts == {("bars", 1): 7, ("bars", 2): 7, ("bucket", 2): 7}


def test_features_needs_something_to_compute(spark: SparkSession) -> None:
    parsed = parse_ticks(kafka_rows(spark, [tick("X", T0, 1, 1.0)]))
    with pytest.raises(ValueError, match="no bar interval"):
        features(parsed, [], None)


def test_split_hands_each_table_its_rows(spark: SparkSession) -> None:
    ticks = [tick("X", T0 + i * SEC, i + 1, 10.0 + i) for i in range(3)]
    batch = features(parse_ticks(kafka_rows(spark, ticks)), [1, 60], (10, 5)).toArrow()
    parts = {name: (table.name, rows) for name, table, rows in split(batch)}
    assert list(parts) == ["bars_1s", "bars_60s", "window_buckets"]
    assert parts["bars_1s"][0] == parts["bars_60s"][0] == "bars"
    assert parts["bars_1s"][1].num_rows == 3
    assert parts["bars_60s"][1].num_rows == 1
    assert parts["bars_60s"][1].column_names == list(BARS.columns[:-1])
    assert parts["window_buckets"][0] == "window_buckets"
    assert parts["window_buckets"][1].column_names == list(WINDOW_BUCKETS.columns[:-1])
    assert parts["window_buckets"][1].num_rows == 1  # the 5 s bucket of all three ticks
