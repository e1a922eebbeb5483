"""Feature transforms: DataFrame in, DataFrame out, no I/O.

The streaming job and the bounded backfill call the same functions, so for closed windows they
give the same rows. Everything is built from Spark SQL expressions (no Python UDFs), so it runs
in the JVM at full speed.

- ``parse_ticks``: Kafka-shaped rows (``key, value, topic, partition, offset, timestamp``) ->
  typed ticks with ``event_ts`` (the event time as a timestamp).
- ``features``: every bar interval and the window buckets in one aggregation. Each tick is
  copied once per interval (its bar) and once more for its bucket, tagged with its ``kind``
  (``bars`` or ``bucket``), and one ``groupBy`` computes all of them: one read, one parse and
  one state store per query instead of one per output. ``window_end`` carries the event-time
  watermark, so Spark evicts each window once the watermark passes its end and drops a tick's
  copy for a window that is already closed, exactly as with ``F.window``.
- bars (``kind = 'bars'``): tumbling OHLCV bars per symbol; open/close (and last bid/ask) are
  the first/last by ``(event_time, seq)``; ``vwap = sum(price * size) / sum(size)`` over ticks
  with a size.
- buckets (``kind = 'bucket'``): tumbling windows of ``gcd(length, slide)`` seconds, what the
  sliding windows are made of (``windows.combine``): first/last price, tick count, and ``m2``,
  the sum of squared deviations from their mean of the log returns between the bucket's
  consecutive ticks ordered by ``(event_time, seq)``. Sliding windows straight from ticks
  would hold each tick once per window (six times for 60 s sliding by 10 s) and rewrite all of
  them every micro-batch; a bucket holds its ticks once, and only while it is open.
- Every row carries ``last_event_time``, the latest event time in the window: with the row's
  ``written_at`` it gives the end-to-end latency of the newest tick the row includes.
- ``bars`` and ``buckets`` select one kind (the backfill and the tests use them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention
from pyspark.sql.pandas.types import from_arrow_schema

from marketpipe.contracts import tick_arrow_schema
from marketpipe.sinks.tables import BARS, WINDOW_BUCKETS

#: The tick contract as a Spark schema (explicit, never inferred from data: derived from it).
TICK_SCHEMA = from_arrow_schema(tick_arrow_schema())


def parse_ticks(kafka_rows: DataFrame) -> DataFrame:
    """Decode ``value`` (JSON ticks, already validated upstream) into typed columns."""
    parsed = F.from_json(F.col("value").cast("string"), TICK_SCHEMA)
    return kafka_rows.select(parsed.alias("t"), F.col("timestamp").alias("kafka_ts")).select(
        "t.*", "kafka_ts", F.timestamp_micros(F.col("t.event_time")).alias("event_ts")
    )


US = 1_000_000
BARS_KIND, BUCKET_KIND = "bars", "bucket"

#: Columns of a bars row and of a bucket row: their tables' but the write time.
BAR_COLUMNS = tuple(c for c in BARS.columns if c != "written_at")
BUCKET_COLUMNS = tuple(c for c in WINDOW_BUCKETS.columns if c != "written_at")


def bucket_seconds(length_s: int, slide_s: int) -> int:
    """The bucket of sliding windows ``length_s`` long every ``slide_s``: each window is a
    whole number of them."""
    return math.gcd(length_s, slide_s)


def _order() -> Column:
    return F.struct(F.col("event_time"), F.col("seq"))


def _window_specs(bar_intervals_s: Sequence[int], bucket_s: int | None) -> Column:
    """Per tick, an array of ``(kind, interval_seconds, start_us, length_us)``: its bar for each
    interval and its bucket."""
    t = F.col("event_time")
    intervals = [(BARS_KIND, n) for n in bar_intervals_s]
    if bucket_s is not None:
        intervals.append((BUCKET_KIND, bucket_s))
    if not intervals:
        raise ValueError("features: no bar interval and no sliding window asked for")
    return F.array(
        *(
            F.struct(
                F.lit(kind).alias("kind"),
                F.lit(n).alias("interval_seconds"),
                (t - t % (n * US)).alias("start_us"),
                F.lit(n * US).alias("length_us"),
            )
            for kind, n in intervals
        )
    )


def features(
    ticks: DataFrame, bar_intervals_s: Sequence[int], sliding: tuple[int, int] | None
) -> DataFrame:
    """Bars for each of ``bar_intervals_s`` and, if ``sliding = (length_s, slide_s)``, the
    buckets of those sliding windows, per symbol, in one aggregation; see the module
    docstring."""
    bucket_s = None if sliding is None else bucket_seconds(*sliding)
    # window_end gets event_ts's watermark metadata (none in a batch job): the grouping key
    # Spark evicts state by and filters late copies on.
    watermark = ticks.schema["event_ts"].metadata
    copies = ticks.select("*", F.explode(_window_specs(bar_intervals_s, bucket_s)).alias("w"))
    keyed = copies.select(
        "*",
        F.col("w.kind").alias("kind"),
        F.col("w.interval_seconds").alias("interval_seconds"),
        F.timestamp_micros(F.col("w.start_us")).alias("window_start"),
        F.timestamp_micros(F.col("w.start_us") + F.col("w.length_us")).alias(
            "window_end", metadata=watermark
        ),
    )
    order = _order()
    in_bucket = F.col("kind") == BUCKET_KIND
    grouped = keyed.groupBy("kind", "interval_seconds", "symbol", "window_start", "window_end").agg(
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
        # Only buckets need their ticks (collect_list skips the nulls bars get).
        F.array_sort(
            F.collect_list(F.when(in_bucket, F.struct("event_time", "seq", "price")))
        ).alias("pts"),
    )
    returns = F.expr(
        "transform(sequence(1, size(pts) - 1), i -> ln(pts[i].price / pts[i - 1].price))"
    )
    with_returns = grouped.withColumn("r", F.when(F.size("pts") > 1, returns))
    # The mean is its own column: referenced inside the lambda it is one value per row; written
    # as an expression there, Spark would recompute it for every element (quadratic).
    with_mean = with_returns.withColumn(
        "mean_r", F.aggregate("r", F.lit(0.0), lambda acc, x: acc + x) / F.size("r")
    )
    m2 = F.aggregate(
        "r", F.lit(0.0), lambda acc, x: acc + (x - F.col("mean_r")) * (x - F.col("mean_r"))
    )
    return with_mean.select(
        "kind",
        *BAR_COLUMNS,
        # No returns (a one-tick bucket): nothing to deviate.
        F.when(in_bucket, F.coalesce(m2, F.lit(0.0))).alias("m2"),
    )


def bars(ticks: DataFrame, interval_seconds: int) -> DataFrame:
    """Tumbling bars of ``interval_seconds`` per symbol, keyed (symbol, interval, start)."""
    return features(ticks, [interval_seconds], None).select(*BAR_COLUMNS)


def buckets(ticks: DataFrame, length_seconds: int, slide_seconds: int) -> DataFrame:
    """The buckets of sliding windows ``length_seconds`` long every ``slide_seconds``."""
    return features(ticks, [], (length_seconds, slide_seconds)).select(*BUCKET_COLUMNS)
