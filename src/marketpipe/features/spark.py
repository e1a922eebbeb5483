"""The Spark side of the features job: its session and its readers of ticks.

- ``spark_session``: the job's session (``local[2]`` here, spark-submit's on a cluster).
- ``read_ticks``: ticks.valid as a query's input (``TickStream``): through the Python source,
  whose micro-batches are offset ranges the driver reads itself (``ranges.RangeReader``), or through
  Spark's Kafka connector (parsed by ``transforms.parse_ticks``).
- ``kafka_reader``/``typed_ticks``: the bounded read of the topic (the backfill), decoded in
  the Python source's workers or parsed from the connector's columns.
- ``read_archived_ticks``: the archive's Parquet files as a stream (``read_from=archive``).

No reader declares Spark's event-time watermark: no query aggregates in Spark, the features
query keeps its own (``aggregate.step``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, DataFrameReader, SparkSession
from pyspark.sql.streaming.readwriter import DataStreamReader
from pyspark.sql.types import StringType, StructField, StructType

from marketpipe.features.jvm import driver_java_options, sigterm_to_the_driver_only
from marketpipe.features.kafka_source import initial_offsets, source_for
from marketpipe.features.offset_log import local_folder, logged_ranges
from marketpipe.features.pyworker import worker_python
from marketpipe.features.ranges import RangeCache, RangeReader
from marketpipe.features.transforms import TICK_SCHEMA, parse_ticks
from marketpipe.kafka.config import client_config, java_client_options
from marketpipe.settings import FeaturesSettings, KafkaSettings


def launched_by_spark_submit() -> bool:
    """True when ``spark-submit`` started this Python process (it hands over its gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_session(
    cfg: FeaturesSettings, app: str = "marketpipe-features", write_archive: bool = False
) -> SparkSession:
    """The session of the job. Under ``spark-submit`` the master is spark-submit's (its
    ``--master``/``--conf`` win, and its driver JVM runs already: the driver's Java options
    are spark-submit's); otherwise ``cfg.master``. ``cfg.spark_conf`` is applied last. With
    ``write_archive`` the JVM may write the class-data archive: end with ``stop_session``."""
    os.environ.setdefault("PYSPARK_PYTHON", worker_python())
    builder = SparkSession.builder.appName(app)
    if not launched_by_spark_submit():
        # Spark puts these before spark.driver.extraJavaOptions, which stays the user's.
        java = driver_java_options(cfg, write_archive)
        builder = builder.master(cfg.master).config("spark.driver.defaultJavaOptions", java)
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    local = local_folder(cfg.checkpoint_dir) is not None
    if local:
        builder = builder.config("spark.hadoop.fs.file.impl", RAW_LOCAL_FS)
    for key, value in cfg.spark_conf.items():
        builder = builder.config(key, value)
    with sigterm_to_the_driver_only():
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    if local and CHECKPOINT_MANAGER_CONF not in cfg.spark_conf:
        manager = _first_class(session, FS_CHECKPOINT_MANAGERS)
        if manager is not None:
            session.conf.set(CHECKPOINT_MANAGER_CONF, manager)
    return session


#: A checkpoint on the local file system: Spark's default checkpoint manager goes through
#: Hadoop's FileContext, whose local file system (without Hadoop's native library, which
#: Spark does not ship) starts a ``readlink`` process for every rename and, like Hadoop's
#: checksummed local file system, a ``chmod`` for every file it creates: each micro-batch's
#: offsets and commit cost ~45 ms each on a quiet machine, and 0.5-0.8 s while the archive
#: query wrote beside it on a busy one (docs/benchmarks.md). Through the FileSystem API and
#: the plain local file system (no ``.crc`` files), 6-7 ms. A rename on a local file system
#: is atomic, which is what the manager needs. ``spark_conf`` may set either back.
RAW_LOCAL_FS = "org.apache.hadoop.fs.RawLocalFileSystem"
CHECKPOINT_MANAGER_CONF = "spark.sql.streaming.checkpointFileManagerClass"
FS_CHECKPOINT_MANAGERS = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager",  # older
)


def _first_class(spark: SparkSession, names: Sequence[str]) -> str | None:
    """The first of ``names`` the session's JVM has (Spark moves classes between releases)."""
    jvm = spark._jvm
    if jvm is None:  # Spark Connect: the server's settings apply
        return None
    for name in names:
        try:
            jvm.java.lang.Class.forName(name)
        except Exception:  # py4j's error for ClassNotFoundException
            continue
        return name
    return None


# The classes that log a failed query at ERROR with every stack trace (Spark 4 and 3 packages).
_QUERY_ERROR_LOGGERS = (
    "org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution",
    "org.apache.spark.sql.execution.streaming.MicroBatchExecution",
)
# The class that warns "Current batch is falling behind" whenever one micro-batch takes longer
# than the trigger, though the next one then starts at once and the job may well keep up.
_SLOW_BATCH_LOGGERS = (
    "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor",
    "org.apache.spark.sql.execution.streaming.ProcessingTimeExecutor",
)


def quiet_spark_logs(spark: SparkSession) -> None:
    """Keep Spark from logging a failed query's stack traces, and a warning for every micro-batch
    slower than the trigger: ``marketpipe features`` reports each failed query in one line (its
    whole error at DEBUG, where this is not called), and says itself when its lag keeps growing
    (``JobMetrics``, from ``lag.LagTrend``)."""
    jvm = spark._jvm  # log4j is reachable only through the gateway
    if jvm is None:  # Spark Connect: the server logs
        return
    configurator = jvm.org.apache.logging.log4j.core.config.Configurator
    levels = jvm.org.apache.logging.log4j.Level
    for name in _QUERY_ERROR_LOGGERS:
        configurator.setLevel(name, levels.FATAL)
    for name in _SLOW_BATCH_LOGGERS:
        configurator.setLevel(name, levels.ERROR)


def kafka_reader(
    spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings, stream: bool = True,
    query: str = "batch",
) -> Any:  # fmt: skip
    """A reader over ticks.valid from the configured source (the Python Data Source, registered
    for ``query`` alone, or Spark's Kafka connector): a stream, or with ``stream=False`` a
    bounded read of all the topic holds now (the backfill). Both sources give the connector's
    columns."""
    base = spark.readStream if stream else spark.read
    if cfg.source == "python":
        source = source_for(query)
        spark.dataSource.register(source)
        return base.format(source.name()).options(**python_source_options(kafka))
    return (
        base.format("kafka")
        .options(**java_client_options(kafka))
        .option("subscribe", kafka.topic_valid)
        .option("kafka.isolation.level", "read_committed")
    )


def python_source_options(kafka: KafkaSettings) -> dict[str, str]:
    """The Python source's options: ticks.valid and the librdkafka connection properties every
    marketpipe client uses (security included)."""
    conf = {k: str(v) for k, v in client_config(kafka).items() if k != "logger"}
    return {**conf, "topic": kafka.topic_valid}


def typed_ticks(reader: DataStreamReader | DataFrameReader, cfg: FeaturesSettings) -> DataFrame:
    """Typed ticks (the contract's columns and ``kafka_ts``) from a ``kafka_reader``: the
    Python source decodes them in its workers (``decode=ticks``), the connector's raw values
    go through ``parse_ticks``."""
    if cfg.source == "python":
        return reader.option("decode", "ticks").load()
    return parse_ticks(reader.load())


@dataclass
class TickStream:
    """A query's input: the stream its ``foreachBatch`` runs on, and how one micro-batch of it
    (the DataFrame and its batch id) becomes the ticks' ``columns`` as an Arrow table in the
    driver. ``close`` when stopped."""

    frame: DataFrame
    collect: Callable[[DataFrame, int], pa.Table]
    close: Callable[[], None] = lambda: None


def _run(batch: DataFrame, _batch_id: int) -> pa.Table:
    return batch.toArrow()


def read_ticks(
    spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings, query: str,
    columns: Sequence[str], checkpoint: str, cache: RangeCache | None = None,
) -> TickStream:  # fmt: skip
    """The valid ticks as query ``query``'s input (checkpointed at ``checkpoint``). From the
    Python source, a micro-batch is its offset ranges, taken from the query's offset log
    where it holds them (``offset_log``; else by running the batch), and the driver reads them
    (``RangeReader``, sharing what it read through ``cache``); from the connector, Spark reads
    and parses the records and ``toArrow`` brings them over."""
    starting = {"startingOffsets": "earliest"}
    reader = (
        kafka_reader(spark, kafka, cfg, query=query)
        .options(**starting)
        .option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    )
    if cfg.source == "python":
        options = python_source_options(kafka)
        ranges = RangeReader(options, query, cache)
        initial = partial(initial_offsets, {**options, **starting})

        def collect(batch: DataFrame, batch_id: int) -> pa.Table:
            planned = logged_ranges(checkpoint, batch_id, initial)
            return ranges.read(batch.toArrow() if planned is None else planned).select(
                list(columns)
            )

        return TickStream(reader.option("decode", "ranges").load(), collect, ranges.close)
    return TickStream(parse_ticks(reader.load()).select(*columns), _run)


def read_archived_ticks(
    spark: SparkSession, cfg: FeaturesSettings, columns: Sequence[str]
) -> TickStream:
    """The ticks the archive query writes to ``<archive_root>/raw``, as a stream read by
    Spark's own Parquet file source (no Python per row)."""
    root = Path(cfg.archive_root).resolve() / "raw"
    root.mkdir(parents=True, exist_ok=True)  # the file source wants its folder to exist
    data = [f for f in TICK_SCHEMA.fields if f.name != "symbol"]
    partitions = [StructField("date", StringType()), StructField("symbol", StringType())]
    frame = spark.readStream.schema(StructType(data + partitions)).parquet(str(root))
    return TickStream(frame.select(*columns), _run)
