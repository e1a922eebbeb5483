"""The Python Data Source Kafka reader against the real broker: exact delivery and resume."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from marketpipe.features.kafka_source import KafkaSource
from marketpipe.kafka import Publisher
from marketpipe.settings import Settings


def publish(settings: Settings, start: int, n: int) -> None:
    publisher = Publisher(settings.kafka)
    keys = [f"S{i % 5}".encode() for i in range(start, start + n)]
    publisher.publish(
        settings.kafka.topic_valid, keys, [b"%d" % i for i in range(start, start + n)]
    )
    assert publisher.close().ok


def stream(
    spark: SparkSession, settings: Settings, checkpoint: Path, seen: list[int],
    sizes: list[int] | None = None,
) -> None:  # fmt: skip
    spark.dataSource.register(KafkaSource)
    source = (
        spark.readStream.format("marketpipe-kafka")
        .option("bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("topic", settings.kafka.topic_valid)
        .option("maxOffsetsPerTrigger", "700")
        .load()
    )

    def collect(batch: DataFrame, _batch_id: int) -> None:
        values = [int(r.value) for r in batch.select("value").collect()]
        seen.extend(values)
        if sizes is not None:
            sizes.append(len(values))

    query = (
        source.writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination(120)
    finally:
        query.stop()


def test_every_message_once_and_exact_resume(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    publish(settings, 0, 2000)
    seen: list[int] = []
    sizes: list[int] = []
    stream(spark, settings, tmp_path / "cp", seen, sizes)
    assert sorted(seen) == list(range(2000))
    assert max(sizes) <= 700  # maxOffsetsPerTrigger holds (Spark hands options lower-cased)
    assert len([n for n in sizes if n]) >= 3
    publish(settings, 2000, 500)
    again: list[int] = []
    stream(spark, settings, tmp_path / "cp", again)  # same checkpoint: only the new ones
    assert sorted(again) == list(range(2000, 2500))


def test_batch_read_matches_the_kafka_connector_columns(
    spark: SparkSession, settings: Settings
) -> None:
    publish(settings, 0, 10)
    spark.dataSource.register(KafkaSource)
    df = (
        spark.read.format("marketpipe-kafka")
        .option("bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("topic", settings.kafka.topic_valid)
        .load()
    )
    assert df.columns == [
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
    ]
    rows = df.collect()
    assert sorted(int(r.value) for r in rows) == list(range(10))
    assert {r.topic for r in rows} == {settings.kafka.topic_valid}
