"""The features job: ticks.valid -> bars, window features, indicators, and the raw archive.

Two streaming queries over the topic, each with its own checkpoint under ``checkpoint_dir``:

- ``features`` reads the ticks and, in each micro-batch, folds them into the windows still
  open (``aggregate.step``: every bar interval and the buckets of the sliding windows, on
  Arrow tables in the driver) and upserts the rows of every window the batch touched; the
  sliding windows holding a touched bucket are combined from their buckets read back from the
  hot store (``sliding_windows``). A window's row is written as soon as it changes and
  rewritten until the watermark closes it, which keeps latency near the trigger interval
  (the watermark follows the slowest partition of the topic: ``watermark``);
  upserts by key make every rewrite (and every replayed micro-batch after a restart) land on
  the same row. The open windows are the job's own state, saved after every batch
  (``state.StateStore``) and read back after a restart, so a replayed batch starts from the
  same windows; Spark keeps only the offsets. Spark's streaming aggregation did this before
  and cost several times as much per tick (docs/benchmarks.md).
  After its upserts, each micro-batch also closes windows: those the next batch's watermark
  will have passed are final in the hot store, so the batch reads back the bars of
  ``indicator_interval_s`` that became final since the batch before into the indicators,
  which continue each symbol's series from the state stored with its previous indicators row
  (so a bar seen again, or a replayed batch, computes the same values). Once the final windows
  not exported yet span ``cold_trigger_s`` of event time, the batch starts their export to
  cold Parquet (every interval, the windows and their indicators, with the ``parquet`` sink;
  ``progress.advance`` says which), written in the background while the next batches run
  (``_Export``).
- ``archive`` writes the valid ticks to ``raw/`` in the cold store and counts late ticks.

A sink outage does not fail a query: each micro-batch's writes are retried through it (see
``FeatureJob._retrying``). That is safe because they are idempotent: upserts by key, cold files
named by query and batch id (closed windows: by query and the exported span's start) and
overwritten whole, indicator state read from before the batch,
export progress and open windows per checkpoint and batch id; a retry redoes them all from the
batch folded once, and a restart after giving up redoes the batch from the checkpoint.

Every row carries ``written_at`` (taken just before the write) and bars and window features
carry ``last_event_time``; their difference is the end-to-end latency of the newest tick in the
row, which the job tracks per output (``bars_<n>s``, ``window_features``, and ``..._closed`` for
the exports) and reports as p50/p99.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import astuple, dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from marketpipe.contracts import TICK_FIELDS
from marketpipe.features.aggregate import (
    US,
    OpenWindows,
    Step,
    bucket_seconds,
    step,
)
from marketpipe.features.kafka_source import backlog, topic_partitions
from marketpipe.features.metrics import JobMetrics
from marketpipe.features.outputs import (
    AGGREGATED,
    as_rows,
    bar_intervals,
    bar_outputs,
    indicator_rows,
    split,
    windows_of,
    with_written_at,
)
from marketpipe.features.progress import NO_BASE, Progress, Span, advance, next_base
from marketpipe.features.ranges import RangeCache
from marketpipe.features.spark import (
    TickStream,
    python_source_options,
    read_archived_ticks,
    read_ticks,
)
from marketpipe.features.state import StateStore, state_root
from marketpipe.features.watermark import PartitionClocks, newest_per_partition
from marketpipe.features.windows import combine, span
from marketpipe.retry import Abandoned, Backoff, GaveUp, first_line, retry
from marketpipe.runtime import Readiness
from marketpipe.settings import FeaturesSettings, KafkaSettings, S3Settings
from marketpipe.sinks.errors import transient_sink_error
from marketpipe.sinks.hub import FeatureSinks, calling
from marketpipe.sinks.tables import BARS, INDICATORS, WINDOW_BUCKETS, WINDOW_FEATURES, TableSpec
from marketpipe.telemetry import FeatureInstruments

log = logging.getLogger(__name__)

T = TypeVar("T")
Outputs = list[tuple[str, pa.Table]]  # (output, rows written), for JobMetrics.wrote

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sliding_windows(
    touched: pa.Table, cfg: FeaturesSettings, sinks: FeatureSinks, now: datetime
) -> pa.Table:
    """The window features of every sliding window holding one of the ``touched`` buckets
    (already upserted), combined from its buckets read back from the first hot sink."""
    length, slide = cfg.window_length_s, cfg.window_slide_s
    earliest, latest = span(touched.column("window_start").cast(pa.int64()).to_pylist(),
                            length * US, slide * US)  # fmt: skip
    size = bucket_seconds(length, slide)
    stored = sinks.rows_ending(WINDOW_BUCKETS, _at(earliest), _at(latest), timedelta(seconds=size))
    stored = stored.filter(pc.equal(stored.column("interval_seconds"), pa.scalar(size, pa.int32())))
    return with_written_at(combine(stored, length, slide, touched), WINDOW_FEATURES, now)


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _extreme_us(column: pa.ChunkedArray, largest: bool) -> int | None:
    """The largest (or smallest) timestamp of ``column`` as epoch microseconds."""
    value = (pc.max if largest else pc.min)(column.cast(pa.int64())).as_py()
    return None if value is None else int(value)


def why_failed(query: str, exc: Exception) -> str:
    """One line saying why query ``query`` failed (``GaveUp``'s names the query already)."""
    return str(exc) if isinstance(exc, GaveUp) else f"query {query} failed: {first_line(exc)}"


#: ``every_us`` that no span reaches: no export is planned while one is being written.
NEVER = 2**62


@dataclass(frozen=True)
class _Export:
    """Final windows (ending in ``span``) being written to cold Parquet in the background.

    An export took 0.6-1.6 s of the features query's batch every ``cold_trigger_s`` at 10k
    ticks/s, every tick of the next batch waiting for it: the highest latencies of a run
    (docs/benchmarks.md). The batch that starts it records its progress as not exported yet;
    once the files are there, the export records that batch's progress again, exported to
    the span's end, and the next batch that sees it done starts from there (``_landed``). A
    crash before that leaves the record where it was, and the next export from there
    rewrites the same files (they are named after the span's start)."""

    span: Span
    future: Future[Outputs]


class FeatureJob:
    """The streaming queries of one ``marketpipe features`` run, writing through ``sinks``.

    ``readiness`` hears of each query retrying through a sink outage; ``failures`` holds, per
    query that failed, one line naming it and saying why (the full error is logged at DEBUG)."""

    def __init__(
        self, spark: SparkSession, kafka: KafkaSettings, cfg: FeaturesSettings,
        sinks: FeatureSinks, readiness: Readiness | None = None,
        instruments: FeatureInstruments | None = None, s3: S3Settings | None = None,
    ) -> None:  # fmt: skip
        self.spark, self.kafka, self.cfg, self.sinks = spark, kafka, cfg, sinks
        self.windows = windows_of(cfg)
        self.s3 = s3
        # Closed windows go to cold storage once they span this much event time.
        self._export_us = int(cfg.cold_trigger_s * US)
        # The windows open after the last micro-batch this process folded, by batch id.
        self._open: tuple[int, OpenWindows] | None = None
        self.readiness = readiness or Readiness()
        self.metrics = JobMetrics(instruments, partial(backlog, python_source_options(kafka)))
        self.queries: list[StreamingQuery] = []
        self._inputs: list[TickStream] = []
        self.failures: dict[str, str] = {}
        self._abandoned: set[str] = set()  # queries whose retrying batch a stop cut short
        self._stopping = threading.Event()
        self._backoff = Backoff(cfg.sink_retry_initial_s, cfg.sink_retry_max_s)
        # Closed windows are exported in one background thread, one span at a time.
        self._exporter = ThreadPoolExecutor(1, thread_name_prefix="export")
        self._export: _Export | None = None
        self._late: dict[str, str] = {}  # failures after a query ended (its last export)

    def start(self, available_now: bool = False) -> list[StreamingQuery]:
        """Start every query. Reading from the archive, the archive query starts first, and in
        a bounded run (``available_now``) it finishes before the features query lists its
        files."""
        self.spark.streams.addListener(self.metrics)
        from_archive = self.cfg.read_from == "archive"
        # Both queries reading the topic, what one of them read serves the other.
        both = self.sinks.cold is not None and not from_archive
        cache = RangeCache(["archive", "features"]) if both else None
        if self.sinks.cold is not None:
            cp = self._checkpoint("archive")
            ticks = self._input(
                read_ticks(self.spark, self.kafka, self.cfg, "archive", TICK_FIELDS, cp, cache)
            )
            archive = self._start(
                ticks.frame, "archive", self._handler("archive", self._archive(ticks.collect)),
                available_now,
                every_s=self.cfg.trigger_s if from_archive else self.cfg.cold_trigger_s,
            )  # fmt: skip
            self.queries.append(archive)
            if from_archive and available_now:
                archive.awaitTermination()
        # A checkpoint holds its source's offsets: reading the archive, the query keeps a
        # checkpoint of its own, so switching read_from never misreads the other kind.
        name = "features-from-archive" if from_archive else "features"
        columns, cp = (*AGGREGATED, "partition"), self._checkpoint(name)
        features_input = self._input(
            read_archived_ticks(self.spark, self.cfg, AGGREGATED)
            if from_archive
            else read_ticks(self.spark, self.kafka, self.cfg, "features", columns, cp, cache)
        )
        handler = self._handler("features", self._features(name, features_input.collect))
        self.queries.append(
            self._start(features_input.frame, "features", handler, available_now,
                        self.cfg.trigger_s, name)
        )  # fmt: skip
        return self.queries

    def _input(self, stream: TickStream) -> TickStream:
        self._inputs.append(stream)
        return stream

    def _start(
        self, frame: DataFrame, name: str, handler: Callable[[DataFrame, int], None],
        available_now: bool, every_s: float, checkpoint: str | None = None,
    ) -> StreamingQuery:  # fmt: skip
        writer = (
            frame.writeStream.queryName(name)
            .outputMode("append")
            .foreachBatch(handler)
            .option("checkpointLocation", self._checkpoint(checkpoint or name))
        )
        if available_now:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{every_s} seconds")
        return writer.start()

    def _checkpoint(self, name: str) -> str:
        return f"{self.cfg.checkpoint_dir}/{name}"

    def _handler(
        self, query: str, body: Callable[[DataFrame, int], None]
    ) -> Callable[[DataFrame, int], None]:
        """``body`` as query ``query``'s foreachBatch function, its failure kept in one line."""

        def handle(batch: DataFrame, batch_id: int) -> None:
            try:
                body(batch, batch_id)
            except Abandoned:
                self._abandoned.add(query)
                raise  # the batch is not done: Spark must not commit it
            except Exception as exc:
                self.failures.setdefault(query, why_failed(query, exc))
                log.debug("query %s failed in batch %d", query, batch_id, exc_info=True)
                raise

        return handle

    def _retrying(self, query: str, write: Callable[[], T]) -> T:
        """``write()``, a micro-batch's (idempotent) writes, redone through sink outages with
        backoff until ``sink_retry_give_up_s``; a permanent sink error fails at once."""
        return retry(
            write, transient_sink_error, self._backoff, self.cfg.sink_retry_give_up_s,
            f"query {query}", self.readiness, self._stopping.wait,
        )  # fmt: skip

    def _features(
        self, name: str, collect: Callable[[DataFrame, int], pa.Table]
    ) -> Callable[[DataFrame, int], None]:
        checkpoint = self._checkpoint(name)
        root = state_root(self.cfg.checkpoint_dir, self.cfg.state_dir, name)
        store = StateStore(root, self.windows, self.s3)
        clocks = PartitionClocks(self.cfg.idle_partition_s)

        def write(batch: DataFrame, batch_id: int) -> None:
            clock = [time.perf_counter()]
            ticks = collect(batch, batch_id)  # read once; a retry only redoes the I/O
            self.metrics.collected("features", batch_id, ticks.num_rows)
            clock.append(time.perf_counter())
            progress, again, before = self._retrying(
                "features", partial(self._before, store, checkpoint, batch_id)
            )
            seen_us = NO_BASE if progress is None else progress.base_us
            delay_us = int(self.cfg.watermark_s * US)
            base_us = next_base(seen_us, self._slowest(clocks, ticks), again)
            aggregated = ticks.select(list(AGGREGATED))
            folded = step(aggregated, before, self.windows, seen_us, delay_us, base_us)
            clock.append(time.perf_counter())
            written = self._retrying(
                "features",
                partial(self._write_features, folded, progress, checkpoint, name, batch_id),
            )
            clock.append(time.perf_counter())
            save = partial(store.save, batch_id, folded.open, folded.added, before)
            self._retrying("features", partial(calling, store, save))
            self._open = (batch_id, folded.open)
            clock.append(time.perf_counter())
            if log.isEnabledFor(logging.DEBUG):
                phases = ("read", "fold", "write", "save")
                newest = _extreme_us(ticks.column("event_time"), largest=True)
                log.debug(
                    "features batch %d: %d ticks, %s; watermark base %s behind its newest tick",
                    batch_id, ticks.num_rows,
                    ", ".join(f"{p} {b - a:.3f}s" for p, a, b in
                              zip(phases, clock[:-1], clock[1:], strict=True)),
                    "-" if newest is None or base_us == NO_BASE
                    else f"{(newest - base_us) / US:.3f}s",
                )  # fmt: skip
            for output, part in written:
                self.metrics.wrote(output, part)
            held = folded.open.partials.num_rows + folded.open.point_count
            size = folded.open.partials.nbytes + folded.open.point_count * 24  # 3 x 8 bytes
            watermark = None if base_us == NO_BASE else base_us - delay_us
            self.metrics.windows("features", folded.dropped, held, size, watermark)

        return write

    def _slowest(self, clocks: PartitionClocks, ticks: pa.Table) -> int | None:
        """With ``ticks`` just read, the slowest partition's newest event time (``watermark``;
        None while a partition is waited for)."""
        newest = newest_per_partition(ticks)
        if newest and not clocks.known and "partition" in ticks.column_names:
            try:  # the broker has just served the batch: a restart is waited out, if any
                clocks.expect(topic_partitions(python_source_options(self.kafka)),
                              time.monotonic())  # fmt: skip
            except (KafkaException, RuntimeError) as exc:
                log.warning(
                    "features: cannot list the partitions of %s (%s): the watermark follows "
                    "those that bring ticks", self.kafka.topic_valid, first_line(exc),
                )  # fmt: skip
        now = time.monotonic()
        clocks.observe(newest, now)
        return clocks.base(now)

    def _before(
        self, store: StateStore, checkpoint: str, batch_id: int
    ) -> tuple[Progress | None, int | None, OpenWindows]:
        """What micro-batch ``batch_id`` starts from: the progress recorded by the batch before
        it (the base of this batch's watermark; its export point is where this batch exports
        from), the base it recorded itself if this is a replay (None: it is not) and the
        windows it left open."""
        recorded = self.sinks.progress_before(checkpoint, batch_id)
        progress = None if recorded is None else Progress(*recorded)
        if self._open is not None and self._open[0] == batch_id - 1:
            return progress, None, self._open[1]  # the batch after the one this process ran
        # The first batch this process runs: Spark replays the batch a crash cut short, which
        # may have recorded its progress already (the latest row before batch_id + 1).
        mine = self.sinks.progress_before(checkpoint, batch_id + 1)
        again = None if mine is None or mine == recorded else Progress(*mine).base_us
        if batch_id == 0:
            return progress, again, OpenWindows.empty()
        return progress, again, calling(store, partial(store.load, batch_id - 1))

    def _write_features(
        self, folded: Step, before: Progress | None, checkpoint: str, name: str, batch_id: int
    ) -> Outputs:
        """A ``features`` batch into the sinks: its bars and buckets, the sliding windows they
        touch, and the windows it closes."""
        now = datetime.now(UTC)
        rows = folded.rows
        written: Outputs = []
        by_table: dict[TableSpec, Outputs] = {}
        for output, table, part in split(rows):
            by_table.setdefault(table, []).append((output, with_written_at(part, table, now)))
        for table, parts in by_table.items():
            self.sinks.upsert(table, as_rows(pa.concat_tables(p for _, p in parts)))
            if table is not WINDOW_BUCKETS:
                written += parts
        for _, touched in by_table.get(WINDOW_BUCKETS, []):
            windows = sliding_windows(touched, self.cfg, self.sinks, now)
            self.sinks.upsert(WINDOW_FEATURES, as_rows(windows))
            written.append(("window_features", windows))
        earliest_end = _extreme_us(rows.column("window_end"), largest=False)
        closing = self._close_windows(
            before, checkpoint, name, batch_id, folded.base_us, earliest_end
        )
        return written + closing

    def _close_windows(
        self, before: Progress | None, checkpoint: str, name: str, batch_id: int,
        base_us: int | None, earliest_end_us: int | None,
    ) -> Outputs:  # fmt: skip
        """Indicators on the bars that became final, and, once the final windows not exported
        yet span ``cold_trigger_s``, those windows to cold Parquet, in the background (see
        ``_Export``; ``before`` is what the batch before it recorded)."""
        landed = self._export if self._export is not None and self._export.future.done() else None
        written, before = ([], before) if landed is None else self._landed(landed, before)
        # One export at a time: while one is being written, the windows wait for the next.
        every_us = NEVER if self._export is not None and landed is None else self._export_us
        plan = advance(before, base_us, earliest_end_us, int(self.cfg.watermark_s * US), every_us)
        export = plan.export if self.sinks.cold_features else None
        if plan.closing is not None:
            every = self.cfg.indicator_interval_s
            lower, upper = _at(plan.closing[0]), _at(plan.closing[1])
            bars = self.sinks.rows_ending(BARS, lower, upper, timedelta(seconds=every))
            closed = bars.filter(pc.equal(bars.column("interval_seconds"), every))
            if closed.num_rows:
                self.sinks.upsert(INDICATORS, indicator_rows(closed, self.sinks, datetime.now(UTC)))
        if plan.after is not None:
            # Exported only once the files are there: until then, from where it was.
            after = plan.after if export is None else replace(plan.after, exported_to_us=export[0])
            self.sinks.record_progress(checkpoint, batch_id, *astuple(after))
            if landed is not None:  # kept until recorded: a retry of the batch lands it again
                self._export = None
            if export is not None:
                # Named after where the span starts (see ``progress``): whoever exports from
                # there rewrites the same files.
                write = partial(self._export_span, export, f"{name}-after-{export[0]}",
                                checkpoint, batch_id, plan.after)  # fmt: skip
                self._export = _Export(export, self._exporter.submit(write))
        return written

    @staticmethod
    def _landed(export: _Export, before: Progress | None) -> tuple[Outputs, Progress | None]:
        """The rows of a background export that is done, and ``before`` with it; its error if
        it failed (the batch fails, as it did when it exported itself)."""
        written = export.future.result()
        if before is not None and before.exported_to_us == export.span[0]:
            before = replace(before, exported_to_us=export.span[1])
        return written, before

    def _export_span(
        self, span: Span, file_name: str, checkpoint: str, batch_id: int, after: Progress
    ) -> Outputs:
        """In the background: the final windows ending in ``span`` from the hot store to cold
        Parquet (every bar interval, the window features and the indicators of the span's
        bars, recomputed from the state before it so their file is complete), then batch
        ``batch_id``'s progress again, exported to the span's end (``after``)."""
        written = self._retrying("features", partial(self._write_export, span, file_name))
        record = partial(self.sinks.record_progress, checkpoint, batch_id, *astuple(after))
        self._retrying("features", record)
        log.debug("features: windows ending in (%s, %s] exported", _at(span[0]), _at(span[1]))
        return written

    def _write_export(self, span: Span, file_name: str) -> Outputs:
        now = datetime.now(UTC)
        lower, upper = _at(span[0]), _at(span[1])
        intervals = bar_intervals(self.cfg)
        bars = self.sinks.rows_ending(BARS, lower, upper, timedelta(seconds=max(intervals)))
        bars = bars.filter(
            pc.is_in(bars.column("interval_seconds"), pa.array(intervals, pa.int32()))
        )
        length = timedelta(seconds=self.cfg.window_length_s)
        windows = self.sinks.rows_ending(WINDOW_FEATURES, lower, upper, length)
        written: Outputs = []
        for table, found in ((BARS, bars), (WINDOW_FEATURES, windows)):
            stamped = with_written_at(found.drop_columns(["written_at"]), table, now)
            # One file per table and partition, overwritten whole.
            self.sinks.closed(table.name, file_name, stamped)
            if table is BARS:
                written += [(f"{o}_closed", part) for o, part in bar_outputs(stamped)]
            else:
                written.append(("window_features_closed", stamped))
        every = self.cfg.indicator_interval_s
        closed = bars.filter(pc.equal(bars.column("interval_seconds"), every))
        if closed.num_rows:
            derived = indicator_rows(closed, self.sinks, now)
            cold = pa.Table.from_pylist(
                [dict(zip(INDICATORS.columns, r, strict=True)) for r in derived]
            )
            self.sinks.closed(INDICATORS.name, file_name, cold)
        return written

    def _archive(
        self, collect: Callable[[DataFrame, int], pa.Table]
    ) -> Callable[[DataFrame, int], None]:
        def write(batch: DataFrame, batch_id: int) -> None:
            ticks = collect(batch, batch_id)
            self.metrics.collected("archive", batch_id, ticks.num_rows)
            if ticks.num_rows:
                self._retrying("archive", partial(self.sinks.archive, str(batch_id), ticks))
                self.metrics.count_late(ticks.column("event_time"))
                self.metrics.count_received(ticks.column("received_at"), ticks.column("event_time"))
                self.metrics.wrote("archive", ticks)

        return write

    def await_all(self, timeout_s: int | None = None) -> None:
        """Until every query is done, and the export the last batch started has landed."""
        for query in self.queries:
            query.awaitTermination(timeout_s)
        if self._export is not None:
            wait([self._export.future], timeout_s)

    def failure(self, query: StreamingQuery) -> str | None:
        """One line saying why ``query`` failed, or None if it did not."""
        error = query.exception()
        if error is None:
            return self._late.get(query.name)  # its last export failed after it ended
        if query.name in self._abandoned:
            return None
        return self.failures.get(query.name) or f"query {query.name} failed: {first_line(error)}"

    def stop(self) -> list[str]:
        """Stop every query; returns the names of those that failed. A batch retrying through
        an outage is abandoned, not failed: Spark did not commit it, a restart redoes it."""
        if any(q.isActive for q in self.queries):
            self._stopping.set()  # else every query is done: its last export lands, retried
        for query in self.queries:
            query.stop()
        self._finish_export()  # no batch left to start another
        self._stopping.set()
        for stream in self._inputs:
            stream.close()
        self.spark.streams.removeListener(self.metrics)
        return [q.name for q in self.queries if self.failure(q) is not None]

    def _finish_export(self) -> None:
        """Wait for the export in the background, if any; its failure is the features
        query's. Not recorded, it is redone from the same point by the next run."""
        export, self._export = self._export, None
        self._exporter.shutdown(wait=True)
        if export is None:
            return
        try:
            for output, part in export.future.result():
                self.metrics.wrote(output, part)
        except Abandoned:
            pass
        except Exception as exc:
            self._late.setdefault("features", why_failed("features", exc))
            log.debug("the features query's last export failed", exc_info=True)
