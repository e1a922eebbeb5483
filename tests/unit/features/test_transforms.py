"""Ticks parsed from Kafka-shaped rows (the connector's path), and the session settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from pyspark.sql import DataFrame, SparkSession

from marketpipe.features.spark import CHECKPOINT_MANAGER_CONF, FS_CHECKPOINT_MANAGERS
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


def test_a_local_checkpoint_is_written_without_starting_processes(
    spark: SparkSession, tmp_path: Path
) -> None:
    """With a checkpoint on the local file system (the default), Spark writes it through
    the FileSystem API and the plain local file system: the default manager started a
    ``readlink`` per rename and a ``chmod`` per file, ~45 ms per offsets or commit file."""
    manager = spark.conf.get(CHECKPOINT_MANAGER_CONF)
    assert manager in FS_CHECKPOINT_MANAGERS
    query = (
        spark.readStream.format("rate").option("rowsPerSecond", 10).load()
        .writeStream.foreachBatch(lambda _batch, _batch_id: None)
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(availableNow=True).start()
    )  # fmt: skip
    query.awaitTermination(60)
    offsets = sorted(p.name for p in (tmp_path / "cp" / "offsets").iterdir())
    assert offsets  # the query ran a batch
    assert not [n for n in offsets if n.endswith(".crc")]  # the plain local file system
