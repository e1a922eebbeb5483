"""The features job's reads of ticks.valid, in its driver, once for both of its queries.

With ``decode=ranges`` the Python source gives a micro-batch as its offset ranges (a row per
partition: ``partition, start, end``), and ``RangeReader`` reads them in the driver, decoded
to the tick contract's columns. Every tick is folded in the driver anyway; reading there skips
each tick's trip from Spark's Python workers into the JVM's rows and back out through
``toArrow``, which was most of a batch's time (docs/benchmarks.md). Spark still plans the
batches, keeps their offsets in the checkpoint and replays them after a restart.

Both queries read the same offsets: the features query every ``trigger_s``, the archive query
every ``cold_trigger_s``. Their readers share a ``RangeCache``: what one of them read is kept
until every reader sharing the cache has read past it, so each tick is fetched and decoded
once; a range one of them is fetching, the other waits for instead of fetching it too (both
start at the same offsets when the job starts with a backlog). A range is a fixed set of
records (the log is append-only and reads are ``read_committed``), so a range served from the
cache is the one the broker would serve. The cache holds at most ``max_rows`` ticks; a
reader that falls further behind than that (a restart, a long sink outage) reads its ranges
from the broker again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from marketpipe.features.kafka_source import (
    TICK_ARROW_SCHEMA,
    KafkaPartition,
    decode_ticks,
    partition_messages,
)

log = logging.getLogger(__name__)

#: How much a reader's consumer fetches ahead, per partition (``queued.max.messages.kbytes``):
#: a consumer is closed after its range, and what it fetched past the range is thrown away.
#: Six partitions read in 20,000-tick ranges: 151k ticks/s with 2 MB, 72k with the 64 MB default.
PREFETCH_KB = 2048
#: Most ticks a ``RangeCache`` holds (about 100 bytes each in Arrow).
CACHE_ROWS = 1_000_000
#: Reading a range for a cache, how many records past it (in ranges of its length, and at
#: most) a consumer also takes into the cache when it holds them already. The local broker
#: answers a fetch with everything up to the partition's end, whatever the fetch size limits
#: say: with a backlog, each range read made it send, and librdkafka parse, all of the backlog
#: again (about 1 GB of memory per consumer for 1.8M ticks; docs/benchmarks.md).
SURPLUS_RANGES = 2
SURPLUS_ROWS = CACHE_ROWS // 8


#: What ``RangeReader.read`` gives: the ticks and the partition each came from.
RANGE_TICKS_SCHEMA = TICK_ARROW_SCHEMA.append(pa.field("partition", pa.int32()))


@dataclass(frozen=True, eq=False)  # chunks are told apart by identity
class Chunk:
    """The ticks of every record at offsets ``[start, end)`` of one partition, with their
    offsets (ascending; transaction markers take offsets too, so rows are not offsets)."""

    start: int
    end: int
    offsets: np.ndarray
    ticks: pa.Table

    def part(self, start: int, end: int) -> Chunk:
        """The records at ``[start, end)``, a range inside this chunk's."""
        lo, hi = np.searchsorted(self.offsets, [start, end]).tolist()
        return Chunk(start, end, self.offsets[lo:hi], self.ticks.slice(lo, hi - lo))


Piece = Chunk | tuple[int, int]  # cached ticks, or a (start, end) range to fetch


@dataclass(frozen=True, eq=False)
class Fetch:
    """Offsets ``[start, end)`` of a partition that reader ``reader`` is fetching from the
    broker: ``done`` is set once what it read is in the cache, or once it failed."""

    reader: str
    start: int
    end: int
    done: threading.Event


class RangeCache:
    """What the ``readers`` (query names) sharing it have read, per partition, kept until all
    of them have read past it or more than ``max_rows`` ticks are held (oldest go first)."""

    def __init__(self, readers: Sequence[str], max_rows: int = CACHE_ROWS) -> None:
        self.readers = tuple(readers)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._chunks: dict[int, list[Chunk]] = {}  # by start; never overlapping
        self._order: deque[tuple[int, Chunk]] = deque()  # as put, for the row cap
        self._rows = 0
        self._read_to: dict[str, dict[int, int]] = {r: {} for r in self.readers}
        self._fetches: dict[int, list[Fetch]] = {}  # by partition

    @property
    def rows(self) -> int:
        return self._rows

    def plan(self, partition: int, start: int, end: int) -> list[Piece]:
        """``[start, end)`` as cached chunks and the gaps between them, in offset order."""
        with self._lock:
            return self._plan(partition, start, end)

    def _plan(self, partition: int, start: int, end: int) -> list[Piece]:
        pieces: list[Piece] = []
        at = start
        for chunk in self._chunks.get(partition, []):
            if chunk.end <= at:
                continue
            if chunk.start >= end:
                break
            if chunk.start > at:
                pieces.append((at, chunk.start))
                at = chunk.start
            stop = min(chunk.end, end)
            pieces.append(chunk.part(at, stop))
            at = stop
            if at >= end:
                break
        if at < end:
            pieces.append((at, end))
        return pieces

    def take(self, reader: str, partition: int, start: int, end: int) -> Chunk | Fetch:
        """What ``reader`` reads next of ``[start, end)``: the cached records from ``start``
        on; or another reader's fetch that holds ``start`` (wait for it, then ask again:
        the two queries start together after a restart, and would each fetch and decode
        the same backlog); or, if neither, the gap from ``start`` to the next of either, now
        ``reader``'s to fetch (``put`` what it read, then ``fetched``, failed or not)."""
        with self._lock:
            first = self._plan(partition, start, end)[0]
            if isinstance(first, Chunk):
                return first
            upto = first[1]  # the gap runs up to the next cached chunk
            fetches = self._fetches.setdefault(partition, [])
            for fetch in fetches:
                if fetch.start <= start < fetch.end:
                    return fetch
                if start < fetch.start:
                    upto = min(upto, fetch.start)
            mine = Fetch(reader, start, upto, threading.Event())
            fetches.append(mine)
            return mine

    def fetched(self, partition: int, fetch: Fetch) -> None:
        """``fetch`` is over: whoever waits for it looks again."""
        with self._lock:
            self._fetches[partition].remove(fetch)
        fetch.done.set()

    def put(self, partition: int, chunk: Chunk) -> None:
        """Keep ``chunk`` (unless another reader kept an overlapping one meanwhile)."""
        with self._lock:
            held = self._chunks.setdefault(partition, [])
            if any(c.start < chunk.end and chunk.start < c.end for c in held):
                return
            held.append(chunk)
            held.sort(key=lambda c: c.start)
            self._order.append((partition, chunk))
            self._rows += chunk.ticks.num_rows
            while self._rows > self.max_rows and self._order:
                self._drop(*self._order[0])

    def read(self, reader: str, partition: int, end: int) -> None:
        """``reader`` has read ``partition`` up to ``end``: drop what every reader has read."""
        with self._lock:
            done = self._read_to[reader]
            done[partition] = max(done.get(partition, 0), end)
            everyone = min(r.get(partition, 0) for r in self._read_to.values())
            for chunk in [c for c in self._chunks.get(partition, []) if c.end <= everyone]:
                self._drop(partition, chunk)

    def _drop(self, partition: int, chunk: Chunk) -> None:
        held = self._chunks.get(partition, [])
        if chunk in held:
            held.remove(chunk)
            self._order.remove((partition, chunk))
            self._rows -= chunk.ticks.num_rows


class RangeReader:
    """Reads micro-batches' offset ranges (the rows of a ``decode=ranges`` source) in this
    process, as the tick contract's columns, for query ``name``.

    Each range is read by a consumer of its own, closed after it: with consumers kept between
    ranges, a read after a broker restart missed records (``make faults``; most likely an
    end-of-partition event left from the previous read moved its position past them), and
    one kept assigned fetches all the time (the local broker answers empty fetches at
    once: 88% of a core for 12 idle consumers). Partitions are read in parallel threads
    (librdkafka and pyarrow's JSON reader run without the GIL). With a ``cache`` shared with
    the job's other query, ranges it read already come from there. ``close`` when done."""

    def __init__(self, options: dict[str, str], name: str, cache: RangeCache | None = None) -> None:
        self.options = {"queued.max.messages.kbytes": str(PREFETCH_KB), **options}
        self.name = name
        self.cache = cache
        self._pool: ThreadPoolExecutor | None = None

    def read(self, ranges: pa.Table) -> pa.Table:
        """The ticks of every range in ``ranges`` (``partition, start, end``), partition by
        partition, each in offset order, with their ``partition`` (``RANGE_TICKS_SCHEMA``)."""
        columns = (ranges.column(c).to_pylist() for c in ("partition", "start", "end"))
        parts = [KafkaPartition(*r) for r in zip(*columns, strict=True) if r[2] > r[1]]
        if len(parts) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(thread_name_prefix=f"read-{self.name}")
            tables = list(self._pool.map(self._read, parts))
        else:
            tables = [self._read(p) for p in parts]
        tables = [
            t.append_column("partition", pa.array(np.full(t.num_rows, p.partition, np.int32)))
            for p, t in zip(parts, tables, strict=True)
        ]
        return pa.concat_tables(tables) if tables else RANGE_TICKS_SCHEMA.empty_table()

    def _read(self, part: KafkaPartition) -> pa.Table:
        if self.cache is None:
            return self._fetch(part.partition, part.start, part.end).ticks
        tables, at = [], part.start
        while at < part.end:
            piece = self.cache.take(self.name, part.partition, at, part.end)
            if isinstance(piece, Fetch) and piece.reader != self.name:
                piece.done.wait()  # the other query is fetching it: then from the cache
                continue
            if isinstance(piece, Fetch):
                try:
                    chunk = self._fetch(part.partition, piece.start, piece.end)
                    self.cache.put(part.partition, chunk)
                finally:
                    self.cache.fetched(part.partition, piece)
            else:
                chunk = piece
            tables.append(chunk.ticks)
            at = chunk.end
        self.cache.read(self.name, part.partition, part.end)
        return pa.concat_tables(tables)

    def _fetch(self, partition: int, start: int, end: int) -> Chunk:
        """``[start, end)`` of ``partition`` from the broker. Reading for a cache, the records
        past ``end`` that the consumer holds already, up to ``SURPLUS_RANGES`` times as many
        as the range, go into the cache too."""
        part = KafkaPartition(partition, start, end)
        more = 0 if self.cache is None else min(SURPLUS_RANGES * (end - start), SURPLUS_ROWS)
        tables, offsets = [], []
        for msgs in partition_messages(self.options, part, more):
            tables.append(decode_ticks([m.value() for m in msgs]))
            offsets.append(np.fromiter((m.offset() for m in msgs), np.int64, len(msgs)))
        at = np.concatenate(offsets) if offsets else np.empty(0, np.int64)
        ticks = pa.concat_tables(tables) if tables else TICK_ARROW_SCHEMA.empty_table()
        past = int(at[-1]) + 1 if len(at) else end  # where what was read ends
        read = Chunk(start, max(end, past), at, ticks)
        if self.cache is not None and past > end:
            self.cache.put(partition, read.part(end, past))
            read = read.part(start, end)
        return read

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
