"""``marketpipe backfill``: the streaming job's aggregation as a bounded batch job.

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
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention

from marketpipe.features.aggregate import OpenWindows, step
from marketpipe.features.outputs import (
    AGGREGATED,
    as_rows,
    indicator_rows,
    split,
    windows_of,
    with_written_at,
)
from marketpipe.features.spark import kafka_reader, typed_ticks
from marketpipe.features.windows import combine
from marketpipe.settings import Settings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.parquet import read_archive
from marketpipe.sinks.tables import (
    BARS,
    INDICATORS,
    WINDOW_BUCKETS,
    WINDOW_FEATURES,
    TableSpec,
    arrow_schema,
)

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
) -> pa.Table:
    """The ticks (the columns ``aggregate.step`` folds) with ``start <= event_time < end``:
    from the archive, or read from the topic through the streaming job's source."""
    if source == "topic":
        reader = kafka_reader(spark, settings.kafka, settings.features, stream=False)
        ticks = typed_ticks(reader, settings.features).select(*AGGREGATED)
        in_range = (F.col("event_time") >= start_us) & (F.col("event_time") < end_us)
        table = ticks.where(in_range).toArrow()  # only the range reaches the driver
    else:
        table = read_archive(settings.features.archive_root, settings.s3, start_us, end_us)
        table = table.select(list(AGGREGATED))
    times = table.column("event_time")
    return table.filter(pc.and_(pc.greater_equal(times, start_us), pc.less(times, end_us)))


def _whole(windows: pa.Table, start_us: int, end_us: int) -> pa.Table:
    """The windows wholly inside ``[start, end)``."""
    starts = windows.column("window_start").cast(pa.int64())
    ends = windows.column("window_end").cast(pa.int64())
    return windows.filter(pc.and_(pc.greater_equal(starts, start_us), pc.less_equal(ends, end_us)))


def run_backfill(
    spark: SparkSession, settings: Settings, sinks: FeatureSinks,
    start_us: int, end_us: int, source: BackfillSource = "archive",
) -> BackfillReport:  # fmt: skip
    """Every window of ``[start, end)`` from its ticks in one ``aggregate.step`` (no watermark:
    nothing is late), upserted like the stream's rows."""
    cfg = settings.features
    ticks = load_ticks(spark, settings, start_us, end_us, source)
    report = BackfillReport(ticks=ticks.num_rows)
    folded = step(ticks, OpenWindows.empty(), windows_of(cfg)).rows
    now = datetime.now(UTC)
    parts = {output: _whole(rows, start_us, end_us) for output, _, rows in split(folded)}
    for n in cfg.bar_intervals_s:
        rows = with_written_at(parts.get(f"bars_{n}s", _empty(BARS)), BARS, now)
        report.rows[f"bars_{n}s"] = sinks.upsert(BARS, as_rows(rows))
    length, slide = cfg.window_length_s, cfg.window_slide_s
    found = parts.get("window_buckets", _empty(WINDOW_BUCKETS))
    sinks.upsert(WINDOW_BUCKETS, as_rows(with_written_at(found, WINDOW_BUCKETS, now)))
    windows = combine(found, length, slide)
    rows = with_written_at(_whole(windows, start_us, end_us), WINDOW_FEATURES, now)
    report.rows["window_features"] = sinks.upsert(WINDOW_FEATURES, as_rows(rows))
    closed = parts.get(f"bars_{cfg.indicator_interval_s}s", _empty(BARS))
    derived = indicator_rows(closed, sinks, datetime.now(UTC))
    report.rows["indicators"] = sinks.upsert(INDICATORS, derived)
    return report


def _empty(table: TableSpec) -> pa.Table:
    """No rows, in ``table``'s columns but the write time."""
    schema = arrow_schema(table)
    return schema.remove(schema.get_field_index("written_at")).empty_table()
