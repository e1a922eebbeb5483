"""A Kafka streaming source on Spark 4's Python Data Source API, for local mode and tests.

The Spark Kafka connector jar cannot be had on every machine (it needs Maven Central); this
source gives the same columns (``key, value, topic, partition, offset, timestamp,
timestampType``) so the features job reads either one the same way. One Spark partition per
Kafka partition; offsets are ``{"<partition>": next offset}`` JSON, kept in Spark's checkpoint,
so a restarted query resumes exactly where the last committed micro-batch ended. Reads are
``read_committed``: aborted transactions of the quality checker never show up.

    spark.dataSource.register(KafkaSource)
    spark.readStream.format("marketpipe-kafka")
        .option("bootstrap.servers", "127.0.0.1:9092").option("topic", "ticks.valid")
        .option("startingOffsets", "earliest").option("maxOffsetsPerTrigger", "200000").load()
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)
READ_TIMEOUT_S = 60.0

#: ``SCHEMA`` as Arrow: read() hands Spark record batches, not a Python tuple per row.
ARROW_SCHEMA = pa.schema(
    [
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timestampType", pa.int32()),
    ]
)


@dataclass
class KafkaPartition(InputPartition):
    partition: int
    start: int
    end: int


def _client_conf(options: dict[str, str]) -> dict[str, Any]:
    """librdkafka properties: every option but the source's own."""
    own = {"topic", "startingoffsets", "maxoffsetspertrigger", "path"}
    return {k: v for k, v in options.items() if k.lower() not in own}


def _consumer(options: dict[str, str]) -> Any:
    from confluent_kafka import Consumer

    conf = _client_conf(options)
    conf.update(
        {
            "group.id": f"marketpipe-spark-{uuid.uuid4().hex[:8]}",  # offsets live in Spark
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    return Consumer(conf)


def _watermarks(options: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Per partition, the (low, high) offsets the topic holds now: one consumer, one lookup."""
    from confluent_kafka import TopicPartition

    topic = options["topic"]
    consumer = _consumer(options)
    try:
        meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {topic!r} not found on {options.get('bootstrap.servers')}")
        return {
            str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            for p in meta.partitions
        }
    finally:
        consumer.close()


def _highs(options: dict[str, str]) -> dict[str, int]:
    return {p: high for p, (_, high) in _watermarks(options).items()}


def read_partition(options: dict[str, str], part: KafkaPartition) -> Iterator[Any]:
    """Arrow record batches of one partition from ``start`` up to (not including) ``end``:
    one batch per consume() call, handed to Spark without a Python object per row."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    topic = options["topic"]
    consumer = _consumer(options)
    try:
        consumer.assign([TopicPartition(topic, part.partition, part.start)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        position = part.start
        while position < part.end:
            # Ask for no more than the range holds: consume() waits out its timeout for a batch
            # it cannot fill, which at the end of every partition cost half a second.
            msgs = consumer.consume(min(10_000, part.end - position), 0.5)
            if not msgs:
                # Transaction markers and aborted records take offsets but yield no message.
                position = max(
                    position, consumer.position([TopicPartition(topic, part.partition)])[0].offset
                )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{topic}[{part.partition}]: stuck at {position} < {part.end}"
                    )
                continue
            deadline = time.monotonic() + READ_TIMEOUT_S
            keys, values, offsets, stamps, kinds = [], [], [], [], []
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        position = max(position, msg.offset() or position)
                        continue
                    raise KafkaException(err)
                offset = msg.offset()
                if offset >= part.end:
                    position = part.end
                    break
                position = offset + 1
                kind, stamp = msg.timestamp()
                keys.append(msg.key())
                values.append(msg.value())
                offsets.append(offset)
                stamps.append(stamp * 1000 if stamp > 0 else None)
                kinds.append(kind)
            if offsets:
                n = len(offsets)
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(keys, pa.binary()),
                        pa.array(values, pa.binary()),
                        pa.array([topic] * n, pa.string()),
                        pa.array([part.partition] * n, pa.int32()),
                        pa.array(offsets, pa.int64()),
                        pa.array(stamps, pa.timestamp("us", tz="UTC")),
                        pa.array(kinds, pa.int32()),
                    ],
                    schema=ARROW_SCHEMA,
                )
    finally:
        consumer.close()


def cap_offsets(lag: dict[str, int], budget: int) -> dict[str, int]:
    """Split ``budget`` offsets over partitions in proportion to their lag, as Spark's Kafka
    connector does. Draining one partition first would race its event times ahead of the
    others, and the watermark would then drop the other partitions' ticks as late."""
    total = sum(lag.values())
    if total <= budget:
        return dict(lag)
    share = {p: lag[p] * budget // total for p in lag}
    left = budget - sum(share.values())
    for p in sorted(lag, key=lambda p: lag[p] - share[p], reverse=True):
        if left <= 0:
            break
        if share[p] < lag[p]:
            share[p] += 1
            left -= 1
    return share


def _options(options: Any) -> dict[str, str]:
    """Spark's options, keys lower-cased: Spark treats them case-insensitively, and a plain
    dict of them may arrive either way (``maxOffsetsPerTrigger`` is ``maxoffsetspertrigger``)."""
    return {str(k).lower(): str(v) for k, v in dict(options).items()}


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: dict[str, str]) -> None:
        self.options = options
        self._target: dict[str, int] | None = None

    def initialOffset(self) -> dict[str, int]:  # noqa: N802 - Spark's API
        latest = self.options.get("startingoffsets", "earliest") != "earliest"
        return {p: high if latest else low for p, (low, high) in _watermarks(self.options).items()}

    def getDefaultReadLimit(self) -> ReadLimit:  # noqa: N802
        cap = self.options.get("maxoffsetspertrigger")
        return ReadMaxRows(int(cap)) if cap else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:  # noqa: N802
        self._target = _highs(self.options)

    def latestOffset(self, start: dict[str, int], limit: ReadLimit) -> dict[str, int]:  # noqa: N802
        highs = self._target or _highs(self.options)
        end = {p: max(highs[p], start.get(p, 0)) for p in highs}
        if isinstance(limit, ReadMaxRows):
            lag = {p: end[p] - start.get(p, 0) for p in end}
            share = cap_offsets(lag, limit.max_rows)
            end = {p: start.get(p, 0) + share[p] for p in end}
        return end

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[InputPartition]:
        return [
            KafkaPartition(int(p), start.get(p, 0), stop)
            for p, stop in sorted(end.items(), key=lambda kv: int(kv[0]))
            if stop > start.get(p, 0)
        ]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        assert isinstance(partition, KafkaPartition)
        yield from read_partition(self.options, partition)

    def commit(self, end: dict[str, int]) -> None:
        pass  # offsets are Spark's checkpoint, not the broker's


class KafkaBatchReader(DataSourceReader):
    """A bounded read of everything the topic holds now (backfill from the topic)."""

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options

    def partitions(self) -> Sequence[InputPartition]:
        return [
            KafkaPartition(int(p), low, high)
            for p, (low, high) in _watermarks(self.options).items()
            if high > low
        ]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        assert isinstance(partition, KafkaPartition)
        yield from read_partition(self.options, partition)


class KafkaSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "marketpipe-kafka"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:  # noqa: N802
        return KafkaStreamReader(_options(self.options))

    def reader(self, schema: StructType) -> DataSourceReader:
        return KafkaBatchReader(_options(self.options))
