"""The replay loader: historical files -> ``ticks.raw`` with their original event times.

- ``seq`` is assigned per symbol in file order (several ticks in one second or millisecond keep
  their order), counting every row of the run from the first file's start, including rows
  skipped by ``start_at``: a resumed replay gives each tick the seq it had the first time, so
  downstream deduplication by (symbol, source, seq) holds. A file's own ``seq`` column wins.
- ``speed`` 1 replays at the original pace, N at N times it, 0 as fast as the broker takes it.
- Accounting: every row read is published, skipped (before ``start_at``, symbol filter) or
  rejected (with file and line); a file that cannot be read is reported and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from marketpipe.contracts import TickColumns
from marketpipe.ingest.progress import Progress
from marketpipe.ingest.readers import PRESETS, FileError, ReadOptions, detect_format, read_file
from marketpipe.ingest.rows import PRICE_FROM_MID, QUOTE_FROM_TRADE, Accounting
from marketpipe.ingest.timeparse import parse_instant
from marketpipe.kafka import DeliveryReport, Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import ReplaySettings

log = logging.getLogger(__name__)

SKIP_BEFORE_START = "before_start"
SKIP_SYMBOL = "symbol_filter"
SKIP_STOPPED = "stopped"


class ReplayPacer:
    """Releases ticks at their original pace divided by ``speed`` (0: never waits).

    The clock follows the highest event time seen, so a tick that is out of order in the file
    is released at once instead of stalling everything behind it.
    """

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.speed = speed
        self._clock = clock
        self._sleep = sleep
        self._anchor: tuple[float, int] | None = None  # (wall seconds, event time us)
        self._high = 0

    def ranges(
        self, event_times: Sequence[int], stop: StopFlag | None = None
    ) -> Iterator[tuple[int, int]]:
        """Split a chunk into [start, end) runs to publish, sleeping until each is due."""
        n = len(event_times)
        if not self.speed or not n:
            if n:
                yield 0, n
            return
        if self._anchor is None:
            self._anchor = (self._clock(), event_times[0])
            self._high = event_times[0]
        wall0, event0 = self._anchor
        due = []
        high = self._high
        for t in event_times:
            high = max(high, t)
            due.append(wall0 + (high - event0) / 1e6 / self.speed)
        self._high = high
        start = 0
        while start < n:
            if stop is not None and stop.is_set():
                return
            now = self._clock()
            end = start
            while end < n and due[end] <= now:
                end += 1
            if end == start:
                self._sleep(min(due[start] - now, 0.1))
                continue
            yield start, end
            start = end


@dataclass
class ReplaySummary:
    topic: str
    files: list[str]
    accounting: Accounting = field(default_factory=Accounting)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    file_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_by: str = "done"

    def lines(self) -> list[str]:
        acc, d = self.accounting, self.delivery
        rate = acc.read / self.elapsed_s if self.elapsed_s else 0.0
        out = [
            f"replayed {len(self.files)} file(s) to {self.topic} in {self.elapsed_s:.2f}s "
            f"({rate:,.0f} rows/s), stopped by {self.stopped_by}",
            f"rows: {acc.read} read, {acc.published} published, "
            f"{sum(acc.skipped.values())} skipped, {sum(acc.rejected.values())} rejected",
        ]
        if acc.skipped:
            out.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(acc.skipped.items())))
        if acc.rejected:
            out.append(
                "rejected: " + ", ".join(f"{k}={v}" for k, v in sorted(acc.rejected.items()))
            )
        out.extend(f"  {r}" for r in acc.first_rejects)
        if acc.derived[PRICE_FROM_MID]:
            out.append(
                "quote-only rows: price = mid of bid/ask, size null "
                f"({acc.derived[PRICE_FROM_MID]} rows)"
            )
        if acc.derived[QUOTE_FROM_TRADE]:
            out.append(
                f"trade-only rows: quote locked at the trade price, sizes null "
                f"({acc.derived[QUOTE_FROM_TRADE]} rows)"
            )
        out.extend(self.notes)
        out.extend(d.lines())
        out.extend(f"file error: {e}" for e in self.file_errors)
        return out

    @property
    def ok(self) -> bool:
        return self.delivery.ok and not self.file_errors and self.accounting.balanced


def read_options(cfg: ReplaySettings) -> ReadOptions:
    """Settings (with a preset's defaults beneath explicit values) -> reader options."""
    opts = ReadOptions(
        format=cfg.format,
        columns=dict(cfg.columns),
        header=cfg.header,
        delimiter=cfg.delimiter,
        time_unit=cfg.time_unit,
        time_format=cfg.time_format,
        tz=cfg.tz,
        price_scale=cfg.price_scale,
        symbol=cfg.symbol,
        chunk_rows=cfg.chunk_rows,
    )
    if cfg.preset:
        preset = PRESETS[cfg.preset]
        opts.format = "csv" if cfg.format == "auto" else cfg.format
        opts.columns = opts.columns or dict(preset.columns)
        opts.header = preset.header if cfg.header is None else cfg.header
        if not (cfg.time_unit or cfg.time_format):
            opts.time_unit, opts.time_format = preset.time_unit, preset.time_format
        opts.tz = cfg.tz or preset.tz
    return opts


def check_files(paths: Sequence[Path], cfg: ReplaySettings) -> None:
    """Fail fast, before publishing anything, on a missing, unreadable or unknown file."""
    for path in paths:
        fmt = detect_format(path)
        if cfg.format not in ("auto", fmt) and not (cfg.format == "csv" and fmt == "kibot"):
            raise FileError(f"{path}: looks like {fmt}, not {cfg.format}")


class Replayer:
    def __init__(
        self,
        cfg: ReplaySettings,
        publisher: Publisher,
        topic: str,
        progress: Progress | None = None,
    ) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.topic = topic
        self.progress = progress or Progress(enabled=False)
        self.pacer = ReplayPacer(cfg.speed)
        self._seq: dict[str, int] = {}
        self._start_us = parse_instant(cfg.start_at) if cfg.start_at else None
        self._only = set(cfg.only_symbols)

    def run(self, paths: Sequence[Path], stop: StopFlag) -> ReplaySummary:
        summary = ReplaySummary(topic=self.topic, files=[str(p) for p in paths])
        opts = read_options(self.cfg)
        started = time.monotonic()
        try:
            for path in paths:
                if stop.is_set():
                    break
                try:
                    done = total = 0
                    for chunk in read_file(path, opts, summary.accounting):
                        self._publish_chunk(chunk.columns, chunk.seq, chunk.source, summary, stop)
                        done, total = chunk.done, chunk.total
                        self.progress.update(path.name, done, total, summary.accounting.read)
                        if stop.is_set():
                            break
                    self.progress.update(path.name, done, total, summary.accounting.read, True)
                except FileError as exc:
                    summary.file_errors.append(str(exc))
                    log.error("%s", exc)
        finally:
            self.progress.close()
            summary.delivery = self.publisher.close()
            summary.elapsed_s = time.monotonic() - started
        if stop.is_set():
            summary.stopped_by = stop.signal_name or "stop"
        if opts.time_unit and not (self.cfg.time_unit or self.cfg.preset):
            summary.notes.append(f"time column read as epoch {opts.time_unit} (inferred)")
        return summary

    def _publish_chunk(
        self,
        cols: TickColumns,
        file_seq: list[int] | None,
        file_source: list[str] | None,
        summary: ReplaySummary,
        stop: StopFlag,
    ) -> None:
        acc = summary.accounting
        if file_seq is not None:
            cols.seq = file_seq
        else:
            counters, seqs = self._seq, []
            for symbol in cols.symbol:
                q = counters.get(symbol, 0) + 1
                counters[symbol] = q
                seqs.append(q)
            cols.seq = seqs
        cols.source = file_source if file_source is not None else self.cfg.source
        cols = self._filtered(cols, acc)
        # The Kafka timestamp stays the publish time: with the original (old) event time, a
        # topic's time-based retention would delete replayed history as soon as it landed.
        values, keys = cols.encode(), cols.keys()
        published = 0
        for start, end in self.pacer.ranges(cols.event_time, stop):
            sent = self.publisher.publish(self.topic, keys[start:end], values[start:end])
            published += sent
            if sent < end - start:  # stopped (or gave up) while the broker was unavailable
                break
        acc.published += published
        if published < len(values):  # stopped while pacing or waiting: read, not sent
            acc.skipped[SKIP_STOPPED] += len(values) - published

    def _filtered(self, cols: TickColumns, acc: Accounting) -> TickColumns:
        start, only = self._start_us, self._only
        if start is None and not only:
            return cols
        keep = []
        for i, (symbol, t) in enumerate(zip(cols.symbol, cols.event_time, strict=True)):
            if only and symbol not in only:
                acc.skipped[SKIP_SYMBOL] += 1
            elif start is not None and t < start:
                acc.skipped[SKIP_BEFORE_START] += 1
            else:
                keep.append(i)
        return cols if len(keep) == len(cols) else cols.select(keep)
