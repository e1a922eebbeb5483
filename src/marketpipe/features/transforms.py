"""Feature transforms: DataFrame in, DataFrame out, no I/O.

The streaming job and the bounded backfill call the same functions, so for closed windows they
give the same rows. Everything is built from Spark SQL expressions (no Python UDFs), so it runs
in the JVM at full speed.

- ``parse_ticks``: Kafka-shaped rows (``key, value, topic, partition, offset, timestamp``) ->
  typed ticks with ``event_ts`` (the event time as a timestamp).
- ``bars``: tumbling OHLCV bars per symbol; open/close (and last bid/ask) are the first/last by
  ``(event_time, seq)``; ``vwap = sum(price * size) / sum(size)`` over ticks with a size.
- Both carry ``last_event_time``, the latest event time in the window: with the row's
  ``written_at`` it gives the end-to-end latency of the newest tick the row includes.
- ``window_features``: sliding windows per symbol; ``log_return = ln(last / first)``;
  ``volatility`` = sample standard deviation of the log returns between consecutive ticks
  ordered by ``(event_time, seq)``, null below 3 ticks.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

#: The tick contract as a Spark schema (explicit: never inferred from data).
TICK_SCHEMA = StructType(
    [
        StructField("symbol", StringType(), nullable=False),
        StructField("event_time", LongType(), nullable=False),
        StructField("seq", LongType(), nullable=False),
        StructField("price", DoubleType(), nullable=False),
        StructField("size", DoubleType(), nullable=True),
        StructField("bid", DoubleType(), nullable=False),
        StructField("ask", DoubleType(), nullable=False),
        StructField("bid_size", DoubleType(), nullable=True),
        StructField("ask_size", DoubleType(), nullable=True),
        StructField("source", StringType(), nullable=False),
    ]
)


def parse_ticks(kafka_rows: DataFrame) -> DataFrame:
    """Decode ``value`` (JSON ticks, already validated upstream) into typed columns."""
    parsed = F.from_json(F.col("value").cast("string"), TICK_SCHEMA)
    return kafka_rows.select(parsed.alias("t"), F.col("timestamp").alias("kafka_ts")).select(
        "t.*", "kafka_ts", F.timestamp_micros(F.col("t.event_time")).alias("event_ts")
    )


def _order() -> Column:
    return F.struct(F.col("event_time"), F.col("seq"))


def bars(ticks: DataFrame, interval_seconds: int) -> DataFrame:
    """Tumbling bars of ``interval_seconds`` per symbol, keyed (symbol, interval, start)."""
    window = F.window("event_ts", f"{interval_seconds} seconds")
    order = _order()
    return (
        ticks.groupBy(F.col("symbol"), window)
        .agg(
            F.min_by("price", order).alias("open"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            F.max_by("price", order).alias("close"),
            F.sum("size").alias("volume"),
            F.count(F.lit(1)).alias("trades"),
            (F.sum(F.col("price") * F.col("size")) / F.sum("size")).alias("vwap"),
            F.max_by("bid", order).alias("last_bid"),
            F.max_by("ask", order).alias("last_ask"),
            F.avg(F.col("ask") - F.col("bid")).alias("mean_spread"),
            F.max("event_ts").alias("last_event_time"),
        )
        .select(
            "symbol",
            F.lit(interval_seconds).alias("interval_seconds"),
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "open",
            "high",
            "low",
            "close",
            "volume",
            "trades",
            "vwap",
            "last_bid",
            "last_ask",
            "mean_spread",
            "last_event_time",
        )
    )


def window_features(ticks: DataFrame, length_seconds: int, slide_seconds: int) -> DataFrame:
    """Sliding-window log return and realised volatility per symbol."""
    window = F.window("event_ts", f"{length_seconds} seconds", f"{slide_seconds} seconds")
    points = F.array_sort(F.collect_list(F.struct("event_time", "seq", "price")))
    grouped = ticks.groupBy(F.col("symbol"), window).agg(
        points.alias("pts"), F.max("event_ts").alias("last_event_time")
    )
    returns = F.expr(
        "transform(sequence(1, size(pts) - 1), i -> ln(pts[i].price / pts[i - 1].price))"
    )
    with_returns = grouped.select(
        "symbol", "window", "pts", "last_event_time", F.when(F.size("pts") > 1, returns).alias("r")
    )
    # The mean is its own column: referenced inside the lambda it is one value per row; written
    # as an expression there, Spark would recompute it for every element (quadratic).
    with_mean = with_returns.withColumn(
        "mean_r", F.aggregate("r", F.lit(0.0), lambda acc, x: acc + x) / F.size("r")
    )
    variance = F.aggregate(
        "r", F.lit(0.0), lambda acc, x: acc + (x - F.col("mean_r")) * (x - F.col("mean_r"))
    ) / (F.size("r") - 1)
    return with_mean.select(
        "symbol",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        F.log(F.element_at("pts", -1)["price"] / F.element_at("pts", 1)["price"]).alias(
            "log_return"
        ),
        F.when(F.size("pts") >= 3, F.sqrt(variance)).alias("volatility"),
        F.size("pts").cast("long").alias("ticks"),
        "last_event_time",
    )
