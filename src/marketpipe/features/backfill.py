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

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from marketpipe.features.job import as_rows, indicator_rows, kafka_reader, with_written_at
from marketpipe.features.transforms import TICK_SCHEMA, bars, parse_ticks, window_features
from marketpipe.settings import Settings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.parquet import read_archive
from marketpipe.sinks.tables import BARS, INDICATORS, WINDOW_FEATURES, TableSpec

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
        raw = kafka_reader(spark, settings.kafka, settings.features, stream=False).load()
        ticks = parse_ticks(raw)
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


def run_backfill(
    spark: SparkSession, settings: Settings, sinks: FeatureSinks,
    start_us: int, end_us: int, source: BackfillSource = "archive",
) -> BackfillReport:  # fmt: skip
    cfg = settings.features
    start = datetime.fromtimestamp(start_us / 1e6, UTC)
    end = datetime.fromtimestamp(end_us / 1e6, UTC)
    ticks = load_ticks(spark, settings, start_us, end_us, source).cache()
    report = BackfillReport(ticks=ticks.count())
    outputs: list[tuple[str, DataFrame, TableSpec]] = [
        (f"bars_{n}s", bars(ticks, n), BARS) for n in cfg.bar_intervals_s
    ]
    outputs.append(
        ("window_features", window_features(ticks, cfg.window_length_s, cfg.window_slide_s),
         WINDOW_FEATURES)
    )  # fmt: skip
    for name, frame, table in outputs:
        rows = with_written_at(_inside(frame, start, end).toArrow(), table, datetime.now(UTC))
        report.rows[name] = sinks.upsert(table, as_rows(rows))
    closed = _inside(bars(ticks, cfg.indicator_interval_s), start, end).toArrow()
    derived = indicator_rows(closed, sinks, datetime.now(UTC))
    report.rows["indicators"] = sinks.upsert(INDICATORS, derived)
    ticks.unpersist()
    return report
