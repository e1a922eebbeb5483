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
    WINDOW_COLUMNS,
    bars,
    features,
    parse_ticks,
    window_features,
)
from marketpipe.sinks.tables import BARS, WINDOW_FEATURES

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


def test_sliding_window_log_return_and_volatility(spark: SparkSession) -> None:
    prices = [100.0, 101.0, 99.0, 102.0]
    ticks = [tick("X", T0 + i * SEC, i + 1, p) for i, p in enumerate(prices)]
    got = {
        (r.window_start, r.window_end): r
        for r in window_features(parse_ticks(kafka_rows(spark, ticks)), 10, 5).collect()
    }
    full = got[(ts(T0), ts(T0 + 10 * SEC))]
    assert full.last_event_time == ts(T0 + 3 * SEC)
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(returns) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert full.ticks == 4
    assert full.log_return == pytest.approx(math.log(102.0 / 100.0))
    assert full.volatility == pytest.approx(sd)
    earlier = got[(ts(T0 - 5 * SEC), ts(T0 + 5 * SEC))]
    assert earlier.ticks == 4  # the 60/10-style overlap: both windows hold all four ticks


def test_volatility_is_null_below_three_ticks(spark: SparkSession) -> None:
    ticks = [tick("Y", T0, 1, 10.0), tick("Y", T0 + SEC, 2, 11.0)]
    rows = window_features(parse_ticks(kafka_rows(spark, ticks)), 10, 10).collect()
    assert [(r.ticks, r.volatility) for r in rows] == [(2, None)]
    assert rows[0].log_return == pytest.approx(math.log(1.1))


def test_spark_conf_setting_reaches_the_session(spark: SparkSession) -> None:
    """MARKETPIPE_FEATURES__SPARK_CONF (the chart passes the driver pod's name this way)."""
    assert spark.conf.get("spark.marketpipe.probe") == "yes"
    assert spark.sparkContext.master == "local[2]"  # not under spark-submit: cfg.master


def test_one_aggregation_gives_every_output_as_the_separate_ones_would(spark: SparkSession) -> None:
    """The streaming job runs ``features`` (all outputs in one groupBy); the backfill and the
    tests above use ``bars``/``window_features``. Both must give the same rows."""
    prices = [100.0, 101.0, 99.0, 102.0, 98.5, 100.5]
    ticks = [tick("X", T0 + i * 700_000, i + 1, p, float(i)) for i, p in enumerate(prices)]
    ticks.append(tick("Y", T0 + 3 * SEC, 1, 50.0, 2.0))
    parsed = parse_ticks(kafka_rows(spark, ticks))
    combined = features(parsed, [1, 2], (4, 2))
    assert {r.kind for r in combined.collect()} == {"bars", "window"}
    got_bars = combined.where("kind = 'bars'").select(*BAR_COLUMNS)
    assertDataFrameEqual(got_bars, bars(parsed, 1).unionByName(bars(parsed, 2)), rtol=1e-12)
    got_windows = combined.where("kind = 'window'").select(*WINDOW_COLUMNS)
    assertDataFrameEqual(got_windows, window_features(parsed, 4, 2), rtol=1e-12)
    # Every tick is in one bar per interval and in length / slide = 2 sliding windows.
    counts = {
        (r.kind, r.interval_seconds): r.n
        for r in combined.groupBy("kind", "interval_seconds")
        .agg(F.sum("trades").alias("n"))
        .collect()
    }
    assert counts == {("bars", 1): 7, ("bars", 2): 7, ("window", None): 14}


def test_features_needs_something_to_compute(spark: SparkSession) -> None:
    parsed = parse_ticks(kafka_rows(spark, [tick("X", T0, 1, 1.0)]))
    with pytest.raises(ValueError, match="no bar interval"):
        features(parsed, [], None)


def test_split_hands_each_table_its_rows(spark: SparkSession) -> None:
    ticks = [tick("X", T0 + i * SEC, i + 1, 10.0 + i) for i in range(3)]
    batch = features(parse_ticks(kafka_rows(spark, ticks)), [1, 60], (10, 5)).toArrow()
    parts = {name: (table.name, rows) for name, table, rows in split(batch)}
    assert list(parts) == ["bars_1s", "bars_60s", "window_features"]
    assert parts["bars_1s"][0] == parts["bars_60s"][0] == "bars"
    assert parts["bars_1s"][1].num_rows == 3
    assert parts["bars_60s"][1].num_rows == 1
    assert parts["bars_60s"][1].column_names == list(BARS.columns[:-1])
    assert parts["window_features"][0] == "window_features"
    assert parts["window_features"][1].column_names == list(WINDOW_FEATURES.columns[:-1])
    assert parts["window_features"][1].num_rows == 2
