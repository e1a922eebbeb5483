"""Ticks parsed from Kafka-shaped rows (the connector's path), and the session settings."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from pyspark.sql import DataFrame, SparkSession

from marketpipe.features.transforms import parse_ticks

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


def tick(symbol: str, t: int, seq: int, price: float, size: float | None) -> dict[str, object]:
    return {"symbol": symbol, "event_time": t, "seq": seq, "price": price, "size": size,
            "bid": price - 0.01, "ask": price + 0.01, "bid_size": None, "ask_size": None,
            "source": "test"}  # fmt: skip


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


def test_spark_conf_setting_reaches_the_session(spark: SparkSession) -> None:
    """MARKETPIPE_FEATURES__SPARK_CONF (the chart passes the driver pod's name this way)."""
    assert spark.conf.get("spark.marketpipe.probe") == "yes"
    assert spark.sparkContext.master == "local[2]"  # not under spark-submit: cfg.master
