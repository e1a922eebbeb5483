"""A Kafka streaming source on Spark 4's Python Data Source API, for local mode and tests.

The Spark Kafka connector jar cannot be had on every machine (it needs Maven Central); this
source gives the same columns (``key, value, topic, partition, offset, timestamp,
timestampType``) so the features job reads either one the same way. One Spark partition per
Kafka partition; offsets are ``{"<partition>": next offset}`` JSON, kept in Spark's checkpoint,
so a restarted query resumes exactly where the last committed micro-batch ended. Reads are
``read_committed``: aborted transactions of the quality checker never show up.

With ``.option("decode", "ticks")`` the source gives typed ticks instead (the contract's
columns, then ``kafka_ts``): each batch of values is parsed to Arrow columns in the Python
worker by pyarrow's JSON reader (C++), so neither the raw bytes nor a JSON parse reach the
JVM. A value that does not parse gives a row of nulls, as Spark's ``from_json`` would.

With ``.option("decode", "ranges")`` the source gives only each micro-batch's offset ranges
(``partition, start, end``: a row per partition with records in the batch), and the caller
reads them itself (``ranges.RangeReader``), decoded as ``decode=ticks`` would. The features job
folds every tick in its driver: reading the ranges there skips the trip of every tick from
the Python workers into the JVM's rows and back out through ``toArrow`` (most of a batch's
time, docs/benchmarks.md), while Spark still plans the batches and keeps their offsets.

    spark.dataSource.register(KafkaSource)
    spark.readStream.format("marketpipe-kafka")
        .option("bootstrap.servers", "127.0.0.1:9092").option("topic", "ticks.valid")
        .option("startingOffsets", "earliest").option("maxOffsetsPerTrigger", "200000").load()
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.json as pa_json
from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from marketpipe.contracts import tick_arrow_schema

SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)
READ_TIMEOUT_S = 60.0
#: Longest wait of one consume() call reading a range. It was 0.5 s, and a micro-batch whose
#: ranges ended at the checker's last commit waited until its next one or the 0.5 s: reads
#: of 0.4-0.55 s every ~20 s at 10k ticks/s, against ~0.1 s (docs/benchmarks.md, 2026-12-08).
CONSUME_WAIT_S = 0.05

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


#: ``decode=ticks``: the tick contract's columns, every one nullable (a value that does not
#: parse is a row of nulls), then the record's Kafka timestamp; as Arrow and as Spark types.
TICK_ARROW_SCHEMA = pa.schema([f.with_nullable(True) for f in tick_arrow_schema()])
KAFKA_TS = pa.field("kafka_ts", pa.timestamp("us", tz="UTC"))
TICK_STRUCT = from_arrow_schema(TICK_ARROW_SCHEMA.append(KAFKA_TS))
#: ``decode=ranges``: a micro-batch's offset ranges, a row per partition, ``end`` exclusive.
RANGES_ARROW_SCHEMA = pa.schema(
    [("partition", pa.int32()), ("start", pa.int64()), ("end", pa.int64())]
)
RANGES_STRUCT = from_arrow_schema(RANGES_ARROW_SCHEMA)
Decode = Literal["none", "ticks", "ranges"]
_JSON_OPTIONS = pa_json.ParseOptions(
    explicit_schema=TICK_ARROW_SCHEMA, unexpected_field_behavior="ignore"
)
_JSON_READ = pa_json.ReadOptions(use_threads=False, block_size=1 << 26)


def decode_ticks(values: list[bytes]) -> pa.Table:
    """JSON tick values -> the contract's columns, one row per value, in order. Values come
    from ticks.valid (validated upstream); one that does not parse anyway becomes a row of
    nulls (``from_json``'s behaviour), found by parsing that batch value by value."""
    if not values:
        return TICK_ARROW_SCHEMA.empty_table()
    if not any(b"\n" in v for v in values):  # JSON needs none; one would split a row
        table = _parse(b"\n".join(values))
        if table is not None and table.num_rows == len(values):
            return table
    return pa.concat_tables([_parse_one(v) for v in values])


def _parse(lines: bytes) -> pa.Table | None:
    try:
        return pa_json.read_json(io.BytesIO(lines), _JSON_READ, _JSON_OPTIONS)
    except pa.ArrowInvalid:
        return None


def _parse_one(value: bytes) -> pa.Table:
    table = _parse(value.replace(b"\n", b" "))  # outside strings, a newline is whitespace
    if table is not None and table.num_rows == 1:
        return table
    return pa.table([pa.nulls(1, f.type) for f in TICK_ARROW_SCHEMA], schema=TICK_ARROW_SCHEMA)


@dataclass
class KafkaPartition(InputPartition):
    partition: int
    start: int
    end: int


@dataclass
class BatchRanges(InputPartition):
    """``decode=ranges``: every partition's range of a micro-batch, as one Spark partition."""

    ranges: list[KafkaPartition]


def _client_conf(options: dict[str, str]) -> dict[str, Any]:
    """librdkafka properties: every option but the source's own."""
    own = {"topic", "startingoffsets", "maxoffsetspertrigger", "path", "decode"}
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


def _watermarks(options: dict[str, str], timeout_s: float = 30.0) -> dict[str, tuple[int, int]]:
    """Per partition, the (low, high) offsets the topic holds now: one consumer, one lookup."""
    from confluent_kafka import TopicPartition

    topic = options["topic"]
    consumer = _consumer(options)
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {topic!r} not found on {options.get('bootstrap.servers')}")
        return {
            str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in meta.partitions
        }
    finally:
        consumer.close()


def backlog(options: dict[str, str], end: dict[str, int], timeout_s: float = 2.0) -> int | None:
    """Messages in the topic past ``end`` (a batch's end offsets), or None if the broker does
    not answer within ``timeout_s``: the source's lag, for metrics."""
    from confluent_kafka import KafkaException

    try:
        highs = _watermarks(options, timeout_s)
    except (KafkaException, RuntimeError):
        return None
    return sum(max(0, high - end.get(p, 0)) for p, (_, high) in highs.items())


def _highs(
    options: dict[str, str], give_up_s: float = READ_TIMEOUT_S, sleep: Any = time.sleep
) -> dict[str, int]:
    """Per partition, the offset past the newest record: what a micro-batch may read up to.
    Asked for every micro-batch, so a broker restarting (refusing connections, or up without
    the topic loaded yet) is waited out for ``give_up_s``, not a failed query: the batch is
    only planned later (found by the kill -9 of the broker in ``make faults``)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + give_up_s
    while True:
        try:
            return {p: high for p, (_, high) in _watermarks(options).items()}
        except (KafkaException, RuntimeError):
            if time.monotonic() >= deadline:
                raise
            sleep(1.0)


def initial_offsets(options: dict[str, str]) -> dict[str, int]:
    """Where a query with no committed micro-batch starts: per partition, the oldest offset the
    topic holds (``startingOffsets=earliest``, the default) or the next one (``latest``). Spark
    asks again whenever it runs batch 0, a replay of it after a restart included."""
    latest = _options(options).get("startingoffsets", "earliest") != "earliest"
    return {p: high if latest else low for p, (low, high) in _watermarks(options).items()}


def topic_partitions(options: dict[str, str]) -> list[int]:
    """The topic's partitions, a broker restart waited out as for ``_highs``."""
    return sorted(int(p) for p in _highs(options))


def decode_mode(options: dict[str, str]) -> Decode:
    """What the source's rows are: the raw columns (``none``), typed ticks (``ticks``), or the
    batch's offset ranges for the caller to read (``ranges``)."""
    decode = options.get("decode", "none")
    if decode in ("none", "ticks", "ranges"):
        return decode  # type: ignore[return-value]
    raise ValueError(f"decode={decode!r}: expected none, ticks or ranges")


def _batch(
    options: dict[str, str], topic: str, partition: int, keys: list[bytes | None],
    values: list[bytes], offsets: list[int], stamps: list[int | None], kinds: list[int],
) -> pa.RecordBatch:  # fmt: skip
    """One consume() call's records as the source's columns (raw, or decoded ticks)."""
    stamp = pa.array(stamps, pa.timestamp("us", tz="UTC"))
    if decode_mode(options) != "none":
        ticks = decode_ticks(values).append_column(KAFKA_TS, stamp).combine_chunks()
        (batch,) = ticks.to_batches()  # values is never empty here: one chunk
        return batch
    n = len(offsets)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            pa.array([topic] * n, pa.string()),
            pa.array([partition] * n, pa.int32()),
            pa.array(offsets, pa.int64()),
            stamp,
            pa.array(kinds, pa.int32()),
        ],
        schema=ARROW_SCHEMA,
    )


def read_partition(options: dict[str, str], part: KafkaPartition) -> Iterator[Any]:
    """Arrow record batches of one partition from ``start`` up to (not including) ``end``:
    one batch per consume() call, handed to Spark without a Python object per row."""
    topic = options["topic"]
    for msgs in partition_messages(options, part):
        keys, values, offsets, stamps, kinds = [], [], [], [], []
        for msg in msgs:
            kind, stamp = msg.timestamp()
            keys.append(msg.key())
            values.append(msg.value())
            offsets.append(msg.offset())
            stamps.append(stamp * 1000 if stamp > 0 else None)
            kinds.append(kind)
        yield _batch(options, topic, part.partition, keys, values, offsets, stamps, kinds)


def partition_messages(
    options: dict[str, str], part: KafkaPartition, more: int = 0
) -> Iterator[list[Any]]:
    """``part``'s records (``_messages``) through a consumer of their own, closed after; then,
    up to ``more`` records past ``part.end`` that the consumer holds already (``queued``)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(options)
    try:
        consumer.assign([TopicPartition(options["topic"], part.partition, part.start)])
        past = yield from _messages(consumer, options["topic"], part)
        if more > 0:
            yield from queued(consumer, past, more)
    finally:
        consumer.close()


def _messages(
    consumer: Any, topic: str, part: KafkaPartition
) -> Generator[list[Any], None, list[Any]]:
    """``part``'s messages through ``consumer`` (positioned at ``part.start``), a list per
    consume() call: the records in the range, none of librdkafka's events. Returns the records
    past the range that the last consume() call gave too."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    deadline = time.monotonic() + READ_TIMEOUT_S
    position = part.start
    past: list[Any] = []
    while position < part.end:
        # Ask for no more than the range holds: consume() waits out its timeout for a batch
        # it cannot fill, end of partition or not, which at the end of every partition cost
        # half a second. It still cannot fill it when the range ends in a transaction marker
        # (a range read up to the last stable offset does) and nothing past it is committed
        # yet: the wait is kept short (CONSUME_WAIT_S), and the partition's end (an EOF at or
        # past the range's end) or the position past the marker ends the range.
        msgs = consumer.consume(min(10_000, part.end - position), CONSUME_WAIT_S)
        if not msgs:
            # Transaction markers and aborted records take offsets but yield no message.
            position = max(
                position, consumer.position([TopicPartition(topic, part.partition)])[0].offset
            )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{part.partition}]: stuck at {position} < {part.end}")
            continue
        deadline = time.monotonic() + READ_TIMEOUT_S
        data = [m for m in msgs if m.error() is None]  # one call a message: the hot loop
        if len(data) < len(msgs):
            for msg in msgs:
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                if err is not None:
                    position = max(position, msg.offset() or position)
        if not data:
            continue
        if data[-1].offset() >= part.end:  # only past transaction markers: asked for no more
            past = [m for m in data if m.offset() >= part.end]
            data = [m for m in data if m.offset() < part.end]
            position = part.end
        else:
            position = max(position, data[-1].offset() + 1)
        if data:
            yield data
    return past


def queued(consumer: Any, first: list[Any], more: int) -> Iterator[list[Any]]:
    """Up to ``more`` records that ``consumer`` holds already (``first``, then what consume()
    gives without waiting), in offset order, stopping at the first event (end of partition or
    an error: these records are extra, a range read later gets them anyway).

    A broker that ignores the fetch size limits (the local one answers a fetch with everything
    up to the partition's end: docs/benchmarks.md) fills a new consumer's queue with the whole
    backlog; taking some of it saves the next read a fetch of all of it again."""
    taken = min(len(first), more)
    if taken:
        yield first[:taken]
    while taken < more:
        msgs = consumer.consume(min(10_000, more - taken), 0)
        cut = next((i for i, m in enumerate(msgs) if m.error() is not None), len(msgs))
        if cut:
            yield msgs[:cut]
            taken += cut
        if cut < len(msgs) or not msgs:
            return


def offset_ranges(start: dict[str, int], end: dict[str, int]) -> list[KafkaPartition]:
    """A micro-batch's ranges from its start and end offsets (``{"<partition>": offset}``):
    one per partition with records in it, in partition order. A partition the start does not
    name (new since) is read from its first offset."""
    return [
        KafkaPartition(int(p), start.get(p, 0), stop)
        for p, stop in sorted(end.items(), key=lambda kv: int(kv[0]))
        if stop > start.get(p, 0)
    ]


def ranges_table(parts: Sequence[KafkaPartition]) -> pa.Table:
    """``parts`` as ``decode=ranges`` gives them: a row per range (``RANGES_ARROW_SCHEMA``)."""
    return pa.Table.from_pylist(
        [{"partition": p.partition, "start": p.start, "end": p.end} for p in parts],
        RANGES_ARROW_SCHEMA,
    )


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
        return initial_offsets(self.options)

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
        parts = offset_ranges(start, end)
        if decode_mode(self.options) == "ranges":
            # One Spark task for the whole batch: its rows are a few numbers, and each task
            # costs a Python worker call (measured: 0.3 s a batch with one per partition).
            return [BatchRanges(parts)] if parts else []
        return parts

    def read(self, partition: InputPartition) -> Iterator[Any]:
        if isinstance(partition, BatchRanges):
            yield from ranges_table(partition.ranges).to_batches()
            return
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

    def schema(self) -> StructType | str:
        mode = decode_mode(_options(self.options))
        if mode == "none":
            return SCHEMA
        return TICK_STRUCT if mode == "ticks" else RANGES_STRUCT

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:  # noqa: N802
        return KafkaStreamReader(_options(self.options))

    def reader(self, schema: StructType) -> DataSourceReader:
        options = _options(self.options)
        if decode_mode(options) == "ranges":
            raise ValueError("decode=ranges is for streams: a bounded read gives ticks")
        return KafkaBatchReader(options)


def source_for(query: str) -> type[KafkaSource]:
    """``KafkaSource`` under a name of its own for query ``query`` (``marketpipe-kafka-<query>``).

    Queries that start together must not share a registered source: Spark serialises each
    task's Python function, environment map included, and two queries' first micro-batches
    planned at once over one registration failed to deserialise (``OptionalDataException`` in
    ``HashMap.readObject``) when the job restarted after kill -9."""
    name = f"{KafkaSource.name()}-{query}"
    return type(f"KafkaSource_{query}", (KafkaSource,), {"name": classmethod(lambda cls: name)})
