"""What the features job did, kept by a ``StreamingQueryListener`` and the batch bodies: for
the shutdown report, and live, every micro-batch, in the job's instruments (its Prometheus
endpoint): input rows and rate, batch duration, state size, rows dropped behind the watermark
and the watermark's delay, the source's lag, rows written and event time -> row latency per
output, late ticks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import SparkContext
from pyspark.sql.streaming.listener import (
    JStreamingQueryListener,
    QueryProgressEvent,
    StreamingQueryListener,
)

from marketpipe.lag import LagTrend
from marketpipe.telemetry import FeatureInstruments

log = logging.getLogger(__name__)

#: Ticks per archive micro-batch whose feed latency is kept and recorded.
FEED_SAMPLE = 1_000
LATENCY_SAMPLES = 100_000  # per output, the most recent
#: Messages past a query's newest batch, from its end offsets (None: not a Kafka source).
Backlog = Callable[[dict[str, int]], int | None]


def kafka_offsets(text: str | None) -> dict[str, int] | None:
    """A Kafka source's offsets from a progress report, per partition: the Python source
    writes ``{"0": 12}``, Spark's connector ``{"topic": {"0": 12}}``. None for other sources
    (the archive's file source) or nothing yet."""
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if not isinstance(found, dict) or not found:
        return None
    if all(isinstance(v, dict) for v in found.values()):  # the connector: one topic
        found = next(iter(found.values()))
    if not all(isinstance(v, int) and str(p).isdigit() for p, v in found.items()):
        return None  # e.g. the file source's {"logOffset": 3}
    return {str(p): int(o) for p, o in found.items()}


def watermark_delay_s(watermark_us: int | None, now_s: float) -> float | None:
    """Wall clock minus the query's watermark, None before the first watermark."""
    if watermark_us is None or watermark_us <= 0:
        return None
    return max(0.0, now_s - watermark_us / 1e6)


#: How many of the latest micro-batches ``JobMetrics.batches`` keeps.
RECENT_BATCHES = 1_000


@dataclass(frozen=True)
class Batch:
    """A micro-batch done: its query, id, ticks and seconds (Spark's ``triggerExecution``)."""

    query: str
    batch_id: int
    ticks: int
    seconds: float


class _ProgressAsJson(JStreamingQueryListener):
    """Hands Spark's progress events to the listener converted from their JSON: one py4j call
    per event. PySpark's own conversion asks the JVM for every field, one call each: 61 ms (17
    ms of CPU) per event against 0.55 ms (0.3 ms) this way, on the driver that folds the ticks,
    four times a second (two queries, a 0.5 s trigger)."""

    def onQueryProgress(self, jevent: Any) -> None:  # noqa: N802
        progress = json.loads(jevent.progress().json())
        self.pylistener.onQueryProgress(QueryProgressEvent.fromJson({"progress": progress}))


class JobMetrics(StreamingQueryListener):
    """Input rows per query, ticks dropped behind the watermark (the features query's own
    count, ``windows``: one per window copy of a tick), late ticks, rows written and latency
    per output; recorded to ``instruments`` too when given. ``backlog`` turns a query's end
    offsets into its lag."""

    def __init__(
        self, instruments: FeatureInstruments | None = None, backlog: Backlog | None = None
    ) -> None:
        self._lock = threading.Lock()
        self.instruments = instruments
        self.backlog = backlog
        self.input_rows: Counter[str] = Counter()
        self._collected: dict[tuple[str, int], int] = {}  # (query, batch id) -> ticks
        self.batches: deque[Batch] = deque(maxlen=RECENT_BATCHES)  # the latest, oldest first
        self.dropped: Counter[str] = Counter()
        self.rows_written: Counter[str] = Counter()
        self.latency_s: dict[str, deque[float]] = {}
        self.late = 0  # older than the newest tick of an earlier archive micro-batch
        self.feed_ticks = 0  # archived ticks that carried a receipt time
        self.feed_s: deque[float] = deque(maxlen=LATENCY_SAMPLES)  # a sample of their delays
        self._max_event_us: int | None = None
        self._trends: dict[str, LagTrend] = {}  # per query: says so when it falls behind

    @property
    def _jlistener(self) -> Any:
        """The JVM side of this listener (what ``spark.streams.addListener`` registers): the
        ``StreamingQueryListener`` one, with progress events read from their JSON."""
        if not hasattr(self, "_jlistenerobj"):
            jvm = SparkContext._jvm
            assert jvm is not None
            self._jlistenerobj = jvm.PythonStreamingQueryListenerWrapper(_ProgressAsJson(self))
        return self._jlistenerobj

    # StreamingQueryListener (Spark calls these on the driver)
    def onQueryStarted(self, event: Any) -> None:  # noqa: N802
        pass

    def collected(self, query: str, batch_id: int, ticks: int) -> None:
        """Micro-batch ``batch_id`` of ``query`` brought ``ticks`` ticks to the driver: its
        input, whatever Spark counted (from the Python source, Spark's rows are the batch's
        offset ranges, which the driver reads itself, and none at all when the driver takes
        them from the offset log: ``offset_log``)."""
        with self._lock:
            self._collected[(query, batch_id)] = ticks
            while len(self._collected) > RECENT_BATCHES:
                self._collected.pop(next(iter(self._collected)))

    def ticks_of(self, query: str, batch_id: int) -> int | None:
        """The ticks micro-batch ``batch_id`` of ``query`` collected (one of the latest)."""
        with self._lock:
            return self._collected.get((query, batch_id))

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        progress = event.progress
        with self._lock:
            rows = self._collected.get((progress.name, progress.batchId), progress.numInputRows)
        seconds = progress.durationMs.get("triggerExecution", 0) / 1000
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "query %s batch %d: %d ticks, %s", progress.name, progress.batchId, rows,
                ", ".join(f"{k} {v / 1000:.2f}s" for k, v in sorted(progress.durationMs.items())),
            )  # fmt: skip
        dropped = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)
        with self._lock:
            self.input_rows[progress.name] += rows
            self.batches.append(Batch(progress.name, progress.batchId, rows, seconds))
            if progress.stateOperators:
                self.dropped[progress.name] += dropped
        if self.instruments is not None:
            self._record(progress, rows, seconds, dropped)

    def _record(self, progress: Any, rows: int, seconds: float, dropped: int) -> None:
        inst, attrs = self.instruments, {"query": progress.name}
        assert inst is not None
        inst.input.add(rows, attrs)
        inst.input_rate.set(rows / seconds if seconds else 0.0, attrs)
        inst.batch_duration.record(seconds, attrs)
        if progress.stateOperators:
            ops = progress.stateOperators
            inst.state_rows.set(sum(op.numRowsTotal for op in ops), attrs)
            inst.state_memory.set(sum(op.memoryUsedBytes for op in ops), attrs)
            inst.watermark_dropped.add(dropped, attrs)
        if self.backlog is not None and progress.sources:
            end = kafka_offsets(progress.sources[0].endOffset)
            lag = None if end is None else self.backlog(end)
            if lag is not None:
                inst.source_lag.set(lag, attrs)
                trend = self._trends.setdefault(progress.name, LagTrend())
                said = trend.observe(time.monotonic(), lag)
                if said is not None:
                    log.warning("features query %s %s", progress.name, said)

    def windows(
        self, query: str, dropped: int, open_rows: int, open_bytes: int,
        watermark_us: int | None = None,
    ) -> None:  # fmt: skip
        """A micro-batch of ``query`` folded into the job's own windows (``aggregate.step``): the
        window copies it dropped behind the watermark, the rows and bytes held open after it
        (what Spark's state operators would report), and the watermark it leaves."""
        with self._lock:
            self.dropped[query] += dropped
        if self.instruments is not None:
            attrs = {"query": query}
            self.instruments.watermark_dropped.add(dropped, attrs)
            self.instruments.state_rows.set(open_rows, attrs)
            self.instruments.state_memory.set(open_bytes, attrs)
            delay = watermark_delay_s(watermark_us, time.time())
            if delay is not None:
                self.instruments.watermark_delay.set(delay, attrs)

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass

    def wrote(self, output: str, table: pa.Table) -> None:
        n = table.num_rows
        lags: list[float] = []
        if "last_event_time" in table.column_names and n:
            lag = pc.subtract(table.column("written_at"), table.column("last_event_time"))
            lags = [v.total_seconds() for v in lag.to_pylist()]
        with self._lock:
            self.rows_written[output] += n
            if lags:
                self.latency_s.setdefault(output, deque(maxlen=LATENCY_SAMPLES)).extend(lags)
        if self.instruments is not None:
            attrs = {"output": output}
            self.instruments.rows_written.add(n, attrs)
            for value in lags:
                self.instruments.latency.record(value, attrs)

    def count_late(self, event_time_us: pa.ChunkedArray) -> None:
        """Ticks older than the newest one of earlier (archive) micro-batches are late.

        Whether the aggregations still took a late tick depends on the watermark when the
        features query read it, which its own micro-batches set, not these: Spark's count of
        window copies dropped behind the watermark (``dropped``) says that. An estimate from
        these batches was wrong by far after a burst (a backlog, a generated history) that
        reached the partitions unevenly: it called thousands of ticks dropped that every
        window held."""
        if not len(event_time_us):
            return
        n_late = 0
        with self._lock:
            newest = self._max_event_us
            if newest is not None:
                n_late = pc.sum(pc.less(event_time_us, newest)).as_py() or 0
                self.late += n_late
            batch_max = pc.max(event_time_us).as_py()
            self._max_event_us = max(batch_max, newest or batch_max)
        if self.instruments is not None and n_late:
            self.instruments.late.add(n_late)

    def count_received(self, received_us: pa.ChunkedArray, event_time_us: pa.ChunkedArray) -> None:
        """Feed latency, receipt time minus event time, of the (archive) batch's ticks that
        carry a receipt time: counted all, kept and recorded for up to ``FEED_SAMPLE`` of them
        per batch, evenly spread (a histogram sample per tick would cost more than the tick)."""
        # A source's clock a little behind the provider's must not make it negative.
        delays = pc.max_element_wise(pc.subtract(received_us, event_time_us).drop_null(), 0)
        n = len(delays)
        if not n:
            return
        every = -(-n // FEED_SAMPLE)  # ceil: at most FEED_SAMPLE of them
        sample = pc.divide(delays.take(pa.array(range(0, n, every))), 1e6).to_pylist()
        with self._lock:
            self.feed_ticks += n
            self.feed_s.extend(sample)
        if self.instruments is not None:
            for value in sample:
                self.instruments.feed_latency.record(value)

    def percentiles(self) -> dict[str, tuple[float, float]]:
        with self._lock:
            return {
                name: (percentile(list(v), 50), percentile(list(v), 99))
                for name, v in self.latency_s.items()
                if v
            }

    def as_dict(self) -> dict[str, object]:
        """The ``--output json`` summary: per query and per output, and latency p50/p99 (s)."""
        with self._lock:
            out: dict[str, object] = {
                "input_ticks": dict(self.input_rows),
                "window_copies_dropped": dict(self.dropped),
                "rows_written": dict(self.rows_written),
                "late_ticks": self.late,
            }
        out["latency_s"] = {k: {"p50": a, "p99": b} for k, (a, b) in self.percentiles().items()}
        out["feed_latency_s"] = self._feed()
        return out

    def _feed(self) -> dict[str, float | int] | None:
        """p50/p99 of the feed latency sample and how many ticks had a receipt time."""
        with self._lock:
            sample, ticks = list(self.feed_s), self.feed_ticks
        if not sample:
            return None
        return {"p50": percentile(sample, 50), "p99": percentile(sample, 99), "ticks": ticks}

    def lines(self) -> list[str]:
        out = []
        with self._lock:
            for name in sorted(self.input_rows):
                dropped = (
                    f", {self.dropped[name]:,} window copies dropped behind the watermark"
                    if name in self.dropped
                    else ""
                )
                out.append(f"query {name}: {self.input_rows[name]:,} ticks in{dropped}")
            for name in sorted(self.rows_written):
                out.append(f"{name}: {self.rows_written[name]:,} rows written")
            out.append(
                f"late ticks: {self.late:,} arrived after a newer tick (all archived; in their "
                "windows but for the window copies dropped behind the watermark, above)"
            )
        for name, (p50, p99) in sorted(self.percentiles().items()):
            out.append(f"latency {name}: p50 {p50:.3f} s, p99 {p99:.3f} s (event time -> row)")
        feed = self._feed()
        if feed is not None:
            out.append(
                f"feed latency: p50 {feed['p50']:.3f} s, p99 {feed['p99']:.3f} s (event time -> "
                f"received by the source; {feed['ticks']:,} ticks had a receipt time)"
            )
        return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, interpolating between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
