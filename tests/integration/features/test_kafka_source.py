"""The Python Data Source Kafka reader against the real broker: exact delivery and resume."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Producer
from pyspark.sql import DataFrame, DataFrameReader, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from marketpipe.contracts import TICK_FIELDS, TickColumns
from marketpipe.features.kafka_source import KafkaSource, initial_offsets, source_for
from marketpipe.features.kafka_source import _watermarks as watermarks
from marketpipe.features.offset_log import logged_ranges
from marketpipe.features.ranges import Chunk, RangeCache, RangeReader
from marketpipe.features.spark import python_source_options
from marketpipe.features.transforms import parse_ticks
from marketpipe.kafka import Publisher
from marketpipe.kafka.config import producer_config
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

    available_now(source, collect, checkpoint)


def available_now(
    source: DataFrame, collect: Callable[[DataFrame, int], None], checkpoint: Path
) -> StreamingQuery:
    """Run ``collect`` over every micro-batch of what ``source`` holds now; the stopped query."""
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
    return query


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


def test_decoded_ticks_equal_the_connector_columns_through_from_json(
    spark: SparkSession, settings: Settings
) -> None:
    """``decode=ticks`` (pyarrow's JSON reader in the worker) and the raw columns through
    ``parse_ticks`` (Spark's from_json, what the connector source takes) give the same rows."""
    cols = TickColumns(source="synthetic")
    for i in range(300):
        cols.symbol.append(f"S{i % 7}")
        cols.event_time.append(1_700_000_000_000_000 + i * 1_000)
        cols.seq.append(i + 1)
        cols.price.append(round(100 + i * 0.37, 2))
        cols.size.append(None if i % 5 == 0 else float(i % 13))
        cols.bid.append(round(99.9 + i * 0.37, 2))
        cols.ask.append(round(100.1 + i * 0.37, 2))
        cols.bid_size.append(None if i % 3 == 0 else 1.5)
        cols.ask_size.append(2.5)
    publisher = Publisher(settings.kafka)
    publisher.publish(settings.kafka.topic_valid, cols.keys(), cols.encode())
    assert publisher.close().ok
    spark.dataSource.register(KafkaSource)

    def reader() -> DataFrameReader:
        return (
            spark.read.format("marketpipe-kafka")
            .option("bootstrap.servers", settings.kafka.bootstrap_servers)
            .option("topic", settings.kafka.topic_valid)
        )

    decoded = reader().option("decode", "ticks").load()
    parsed = parse_ticks(reader().load())
    assert decoded.columns == [*TICK_FIELDS, "kafka_ts"]
    got = sorted(decoded.collect(), key=lambda r: (r.symbol, r.seq))
    assert len(got) == 300
    # The connector's rows keep their partition too (the features job's watermark is per
    # partition; the decoded ticks serve the backfill, which has no watermark).
    assert got == sorted(
        parsed.drop("event_ts", "partition").collect(), key=lambda r: (r.symbol, r.seq)
    )


def flat_ticks(seqs: range, symbol: Callable[[int], str]) -> TickColumns:
    """A tick per ``seq`` (its sequence number and, in microseconds past a base, its event
    time), every price and size 1.0."""
    cols = TickColumns(source="synthetic")
    for seq in seqs:
        cols.symbol.append(symbol(seq))
        cols.event_time.append(1_700_000_000_000_000 + seq)
        cols.seq.append(seq)
        for name in ("price", "size", "bid", "ask", "bid_size", "ask_size"):
            getattr(cols, name).append(1.0)
    return cols


def test_ranges_read_in_the_driver_give_every_committed_tick_once(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    """``decode=ranges``: the micro-batches' offset ranges, read by two ``RangeReader``s (the
    features and archive queries) sharing a cache, give each committed tick exactly once,
    none of an aborted transaction, past the offsets transaction markers take."""
    conf = producer_config(settings.kafka, transactional_id=f"t-{tmp_path.name}")
    producer = Producer({**conf, "transaction.timeout.ms": 60_000, "delivery.timeout.ms": 60_000})
    producer.init_transactions(30)
    committed: list[int] = []
    for txn in range(8):
        seqs = range(txn * 100, txn * 100 + 100)
        cols = flat_ticks(seqs, lambda seq: f"S{seq % 5}")
        producer.begin_transaction()
        for key, value in zip(cols.keys(), cols.encode(), strict=True):
            producer.produce(settings.kafka.topic_valid, value, key)
        if txn == 3:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            committed += seqs
    options = python_source_options(settings.kafka)
    cache = RangeCache(["features", "archive"])
    features = RangeReader(options, "features", cache)
    archive = RangeReader(options, "archive", cache)
    seen: list[int] = []
    partitions: dict[str, int] = {}
    registered = source_for("ranges-test")
    spark.dataSource.register(registered)
    source = (
        spark.readStream.format(registered.name())
        .options(**options)
        .option("decode", "ranges")
        .option("maxOffsetsPerTrigger", "170")
        .load()
    )

    logged: list[int] = []
    initial = partial(initial_offsets, options)

    def collect(batch: DataFrame, batch_id: int) -> None:
        ranges = batch.toArrow()
        # The ranges the job takes from the offset log instead are the ones Spark runs.
        # Batch 0 starts at the source's initial offsets, which the driver asks for as Spark
        # does; the others where the batch before ended.
        from_log = logged_ranges(str(tmp_path / "cp"), batch_id, initial)
        assert from_log is not None
        assert from_log.equals(ranges), (batch_id, from_log, ranges)
        logged.append(batch_id)
        ticks = features.read(ranges)
        assert archive.read(ranges).equals(ticks)  # the second reader's from the cache
        # Each tick with the partition its range is of (what the watermark is kept per).
        starts = dict(zip(*(ranges.column(c).to_pylist() for c in ("partition", "start")),
                          strict=True))  # fmt: skip
        assert set(ticks.column("partition").to_pylist()) <= set(starts)
        pairs = zip(*(ticks.column(c).to_pylist() for c in ("symbol", "partition")), strict=True)
        for symbol, partition in pairs:
            assert partitions.setdefault(symbol, partition) == partition  # keyed by symbol
        seen.extend(ticks.column("seq").to_pylist())

    try:
        query = available_now(source, collect, tmp_path / "cp")
    finally:
        features.close()
        archive.close()
    assert query.exception() is None
    assert sorted(seen) == committed
    assert len(seen) == len(set(seen))
    assert len(set(partitions.values())) > 1  # 5 symbols over 3 partitions
    assert cache.rows == 0  # both read everything: nothing is held
    assert len(logged) >= 4  # 700 committed records, 170 a batch


def test_a_read_for_a_cache_keeps_the_records_its_consumer_holds_past_the_range(
    settings: Settings,
) -> None:
    """Reading ``[0, 100)`` of a partition holding 1,000 ticks, the consumer has fetched
    past 100 already (one fetch takes them all, from any broker): up to as many again go into
    the cache, so the next range is read from there, exactly its records."""
    cols = flat_ticks(range(1_000), lambda _: "S0")  # one key: one partition
    publisher = Publisher(settings.kafka)
    publisher.publish(settings.kafka.topic_valid, cols.keys(), cols.encode())
    assert publisher.close().ok
    options = python_source_options(settings.kafka)
    [(part, end)] = [(int(p), high) for p, (_, high) in watermarks(options).items() if high]
    assert end == 1_000
    cache = RangeCache(["features", "archive"])
    reader = RangeReader(options, "features", cache)

    def ranges(start: int, stop: int) -> pa.Table:
        return pa.table({"partition": [part], "start": [start], "end": [stop]})

    try:
        assert reader.read(ranges(0, 100)).column("seq").to_pylist() == list(range(100))
        held = cache.plan(part, 100, 300)
        assert [(c.start, c.end) for c in held if isinstance(c, Chunk)] == [(100, 300)]
        assert reader.read(ranges(100, 250)).column("seq").to_pylist() == list(range(100, 250))
        assert reader.read(ranges(250, 1_000)).column("seq").to_pylist() == list(range(250, 1_000))
    finally:
        reader.close()


def test_two_readers_reading_the_same_ranges_at_once_fetch_each_range_once(
    settings: Settings,
) -> None:
    """Both queries start at the same offsets when the job starts with a backlog: what one
    reader is fetching, the other waits for and takes from the cache, exactly the records."""
    cols = flat_ticks(range(3_000), lambda seq: f"S{seq % 7}")
    publisher = Publisher(settings.kafka)
    publisher.publish(settings.kafka.topic_valid, cols.keys(), cols.encode())
    assert publisher.close().ok
    options = python_source_options(settings.kafka)
    highs = {int(p): high for p, (_, high) in watermarks(options).items() if high}
    assert len(highs) > 1
    ranges = pa.table({"partition": list(highs), "start": [0] * len(highs),
                       "end": list(highs.values())})  # fmt: skip
    cache = RangeCache(["features", "archive"])
    readers = [RangeReader(options, name, cache) for name in cache.readers]
    fetched: list[tuple[int, int, int]] = []
    for reader in readers:
        fetch = reader._fetch

        def counted(partition: int, start: int, end: int, fetch: Any = fetch) -> Chunk:
            fetched.append((partition, start, end))
            return fetch(partition, start, end)

        reader._fetch = counted  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(2) as pool:
            tables = list(pool.map(lambda r: r.read(ranges), readers))
    finally:
        for reader in readers:
            reader.close()
    assert tables[0].equals(tables[1])
    assert sorted(tables[0].column("seq").to_pylist()) == list(range(3_000))
    assert sorted(fetched) == sorted((p, 0, high) for p, high in highs.items())
    assert cache.rows == 0
