"""The features job: ticks.valid -> bars and window features, one streaming query per output.

Spark cannot chain several aggregations in one streaming query, so each output (bars for each
interval, window features) is its own query over the same source with its own checkpoint. They
run in ``update`` mode: a window's row is written as soon as it changes and rewritten until the
watermark closes it, which keeps latency near the trigger interval; the sinks' upserts by key
make every rewrite (and every replayed micro-batch after a restart) land on the same row.
Every row carries ``written_at``, the time its micro-batch was written.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from marketpipe.contracts import TICK_FIELDS
from marketpipe.features.kafka_source import KafkaSource
from marketpipe.features.transforms import bars, parse_ticks, window_features
from marketpipe.settings import FeaturesSettings, KafkaSettings, PostgresSettings, S3Settings
from marketpipe.sinks.duckdb import DuckDBSink
from marketpipe.sinks.parquet import ParquetSink
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import BARS, WINDOW_FEATURES, TableSpec

log = logging.getLogger(__name__)

Writer = Callable[[TableSpec, list[tuple[object, ...]]], int]


def spark_session(cfg: FeaturesSettings, app: str = "marketpipe-features") -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(cfg.master)
        .appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    return session


def read_ticks(spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings) -> DataFrame:
    """The valid ticks as a stream, typed, with the event-time watermark applied."""
    if cfg.source == "python":
        spark.dataSource.register(KafkaSource)
        reader = spark.readStream.format("marketpipe-kafka").option(
            "bootstrap.servers", kafka.bootstrap_servers
        )
    else:
        reader = spark.readStream.format("kafka").option(
            "kafka.bootstrap.servers", kafka.bootstrap_servers
        )
        reader = reader.option("subscribe", kafka.topic_valid).option(
            "kafka.isolation.level", "read_committed"
        )
    raw = (
        reader.option("topic", kafka.topic_valid)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
        .load()
    )
    return parse_ticks(raw).withWatermark("event_ts", f"{cfg.watermark_s} seconds")


def _rows(batch: DataFrame, table: TableSpec, written_at: datetime) -> list[tuple[object, ...]]:
    out = []
    for row in batch.collect():
        values = row.asDict()
        values["written_at"] = written_at
        out.append(tuple(_utc(values[c]) for c in table.columns))
    return out


def _utc(value: object) -> object:
    # Spark hands out naive datetimes in the session time zone (UTC).
    return (
        value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value
    )


def _trigger(
    writer: DataStreamWriter, cfg: FeaturesSettings, available_now: bool
) -> DataStreamWriter:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{cfg.trigger_s} seconds")


def start_archive(
    spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings,
    s3: S3Settings | None = None, available_now: bool = False,
) -> StreamingQuery:  # fmt: skip
    """Valid ticks, as they arrive, to Parquet under ``<archive_root>/raw``. A replayed
    micro-batch keeps its batch id, so it rewrites the same files."""
    sink = ParquetSink(cfg.archive_root, s3)
    ticks = read_ticks(spark, kafka, cfg).select(*TICK_FIELDS)

    def archive(batch: DataFrame, batch_id: int) -> None:
        table = batch.toArrow()
        if table.num_rows:
            sink.write("raw", batch_id, table, "event_time")

    writer = (
        ticks.writeStream.queryName("archive")
        .outputMode("append")
        .foreachBatch(archive)
        .option("checkpointLocation", f"{cfg.checkpoint_dir}/archive")
    )
    return _trigger(writer, cfg, available_now).start()


def start_queries(
    spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings, write: Writer,
    available_now: bool = False,
) -> list[StreamingQuery]:  # fmt: skip
    ticks = read_ticks(spark, kafka, cfg)
    outputs: list[tuple[str, DataFrame, TableSpec]] = [
        (f"bars_{n}s", bars(ticks, n), BARS) for n in cfg.bar_intervals_s
    ]
    outputs.append(
        (
            "window_features",
            window_features(ticks, cfg.window_length_s, cfg.window_slide_s),
            WINDOW_FEATURES,
        )
    )
    queries = []
    for name, frame, table in outputs:

        def sink(
            batch: DataFrame, batch_id: int, table: TableSpec = table, name: str = name
        ) -> None:
            rows = _rows(batch, table, datetime.now(UTC))
            if rows:
                write(table, rows)
            log.debug("%s batch %d: %d rows", name, batch_id, len(rows))

        writer = (
            frame.writeStream.queryName(name)
            .outputMode("update")
            .foreachBatch(sink)
            .option("checkpointLocation", f"{cfg.checkpoint_dir}/{name}")
        )
        queries.append(_trigger(writer, cfg, available_now).start())
    return queries


def sink_writer(
    cfg: FeaturesSettings, postgres: PostgresSettings | None = None
) -> tuple[Writer, Callable[[], None]]:
    """One writer that upserts into every configured sink, and a function closing them."""
    sinks: list[DuckDBSink | PostgresSink] = []
    for name in cfg.sinks:
        if name == "duckdb":
            sinks.append(DuckDBSink(cfg.duckdb_path))
        elif postgres is not None:
            sinks.append(PostgresSink(postgres))

    def write(table: TableSpec, rows: list[tuple[object, ...]]) -> int:
        return max(sink.upsert(table, rows) for sink in sinks)

    def close() -> None:
        for sink in sinks:
            sink.close()
        # Spark keeps the foreachBatch closures (and so this list) until the process exits;
        # let the connections go now.
        sinks.clear()

    return write, close
