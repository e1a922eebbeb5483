"""``marketpipe backfill``: the streaming job's transforms as a bounded batch job.

Input: the raw Parquet archive (default) or the topic from its earliest offsets, restricted to
ticks with ``start <= event_time < end``. Output: bars and window features whose windows lie
wholly inside ``[start, end)``, and indicators on the closed bars of ``indicator_interval_s``
(each symbol continued from its stored state before the first bar), upserted into the same hot
sinks by the same keys. Running it twice, or over windows the stream already wrote, leaves the
same rows: for closed windows the stream and the backfill agree (a test holds them to it),
except where the stream dropped ticks behind its watermark, which the backfill puts back.
Cold Parquet feature files are the stream's; the backfill does not rewrite them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from marketpipe.features.job import (
    as_rows,
    indicator_rows,
    kafka_reader,
    typed_ticks,
    with_written_at,
)
from marketpipe.features.transforms import TICK_SCHEMA, bars, buckets
from marketpipe.features.windows import combine
from marketpipe.settings import Settings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.parquet import read_archive
from marketpipe.sinks.tables import BARS, INDICATORS, WINDOW_BUCKETS, WINDOW_FEATURES

BackfillSource = Literal["archive", "topic"]


@dataclass
class BackfillReport:
    ticks: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"ticks read: {self.ticks:,}"]
        out += [f"{name}: {n:,} rows upserted" for name, n in self.rows.items()]
        return out


def load_ticks(
    spark: SparkSession, settings: Settings, start_us: int, end_us: int, source: BackfillSource
) -> DataFrame:
    """Typed ticks (the streaming job's columns, with ``event_ts``) in ``[start, end)``."""
    if source == "topic":
        reader = kafka_reader(spark, settings.kafka, settings.features, stream=False)
        ticks = typed_ticks(reader, settings.features)
    else:
        table = read_archive(settings.features.archive_root, settings.s3, start_us, end_us)
        frame = (
            spark.createDataFrame(table)
            if table.num_rows
            else spark.createDataFrame([], TICK_SCHEMA)
        )
        ticks = frame.withColumn("event_ts", F.timestamp_micros("event_time"))
    return ticks.where((F.col("event_time") >= start_us) & (F.col("event_time") < end_us))


def _inside(frame: DataFrame, start: datetime, end: datetime) -> DataFrame:
    return frame.where((F.col("window_start") >= start) & (F.col("window_end") <= end))


def _whole(windows: pa.Table, start_us: int, end_us: int) -> pa.Table:
    """The windows wholly inside ``[start, end)``."""
    starts = windows.column("window_start").cast(pa.int64())
    ends = windows.column("window_end").cast(pa.int64())
    return windows.filter(pc.and_(pc.greater_equal(starts, start_us), pc.less_equal(ends, end_us)))


def run_backfill(
    spark: SparkSession, settings: Settings, sinks: FeatureSinks,
    start_us: int, end_us: int, source: BackfillSource = "archive",
) -> BackfillReport:  # fmt: skip
    cfg = settings.features
    start = datetime.fromtimestamp(start_us / 1e6, UTC)
    end = datetime.fromtimestamp(end_us / 1e6, UTC)
    ticks = load_ticks(spark, settings, start_us, end_us, source).cache()
    report = BackfillReport(ticks=ticks.count())
    now = datetime.now(UTC)
    for n in cfg.bar_intervals_s:
        rows = with_written_at(_inside(bars(ticks, n), start, end).toArrow(), BARS, now)
        report.rows[f"bars_{n}s"] = sinks.upsert(BARS, as_rows(rows))
    length, slide = cfg.window_length_s, cfg.window_slide_s
    found = _inside(buckets(ticks, length, slide), start, end).toArrow()
    sinks.upsert(WINDOW_BUCKETS, as_rows(with_written_at(found, WINDOW_BUCKETS, now)))
    windows = combine(found, length, slide)
    rows = with_written_at(_whole(windows, start_us, end_us), WINDOW_FEATURES, now)
    report.rows["window_features"] = sinks.upsert(WINDOW_FEATURES, as_rows(rows))
    closed = _inside(bars(ticks, cfg.indicator_interval_s), start, end).toArrow()
    derived = indicator_rows(closed, sinks, datetime.now(UTC))
    report.rows["indicators"] = sinks.upsert(INDICATORS, derived)
    ticks.unpersist()
    return report
