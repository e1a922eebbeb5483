"""Which windows a micro-batch of the features query closes, and which it exports to cold
storage: pure arithmetic on event times.

The features query writes a window's row whenever the window changes; a window is final once
the event-time watermark has passed its end, because from then on every tick for it is dropped
(``aggregate.step``). The watermark for micro-batch ``N + 1`` is ``newest event time seen up to
and including batch N - delay`` (one input, one watermark: Spark's rule), so once batch ``N``
has been written every window ending at or before that is final, and batch ``N`` handles it
itself: closed windows leave with the batch that closed them, not with the next one (which
might not come for a while: a market closes, a bounded run ends).

Two things follow a window's close:

- **Closing** (indicators on closed bars): batch ``N`` takes the windows that ended in
  ``(watermark_N, watermark_N+1]``, every batch, so indicators follow the market closely.
- **Export** (closed windows to cold Parquet, a file per symbol): batch ``N`` exports the
  windows that ended in ``(exported_to, watermark_N+1]``, but only once that span is at least
  ``every_us`` of event time. Exporting every micro-batch wrote a file per symbol and second
  (50 PUTs a second at 50 symbols), most of the features job's time in a run of every stage
  on one machine; every 10 s it writes a tenth of the files, each ten times larger.

The record is per batch and a batch reads the record of the batch before it, so a replayed
batch (after a crash) closes and exports exactly the same windows again, into the same files.
Nothing here depends on the clock or the run mode, only on the recorded progress and the
batch's ticks, which is what makes that so.
"""

from __future__ import annotations

from dataclasses import dataclass

Span = tuple[int, int]  # window ends (after, upto]


@dataclass(frozen=True)
class Progress:
    """After a micro-batch: the newest event time seen so far, and the end up to which closed
    windows have been exported (epoch microseconds)."""

    max_event_us: int
    exported_to_us: int


@dataclass(frozen=True)
class Advance:
    """What one micro-batch does with closed windows, and the progress to record after it."""

    closing: Span | None  # windows this batch closes (None: none)
    export: Span | None  # windows this batch exports to cold storage (None: none yet)
    after: Progress | None  # None: nothing seen yet


def advance(
    before: Progress | None,
    newest_us: int | None,
    earliest_end_us: int | None,
    delay_us: int,
    every_us: int = 0,
) -> Advance:
    """For one micro-batch: the window ends it closes and exports, and the progress to record.

    ``before`` is the progress after the previous batch (None for the query's first batch with
    data); ``newest_us`` the newest event time of this batch's ticks and ``earliest_end_us``
    the earliest ``window_end`` among the rows it wrote (None for an empty batch);
    ``delay_us`` the watermark delay; ``every_us`` the least span of window ends an export
    takes (0: every batch that closes windows exports them).
    """
    if before is None:
        if newest_us is None or earliest_end_us is None:
            return Advance(None, None, None)
        # Nothing was closed before: every window this batch wrote ends at or after its
        # earliest window end, and a later batch's late tick can only open a window that ends
        # after the next watermark.
        upto = newest_us - delay_us
        start = min(earliest_end_us - 1, upto)
        closing = (start, upto) if upto > start else None
        return _export(closing, start, newest_us, upto, every_us)
    newest = before.max_event_us if newest_us is None else max(before.max_event_us, newest_us)
    upto = newest - delay_us  # the next batch's watermark
    watermark = before.max_event_us - delay_us  # this batch's
    closing = (watermark, upto) if upto > watermark else None
    return _export(closing, before.exported_to_us, newest, upto, every_us)


def _export(closing: Span | None, exported_to: int, newest: int, upto: int, every: int) -> Advance:
    """Export ``(exported_to, upto]`` once it spans ``every``; else keep it for a later batch."""
    if upto > exported_to and upto - exported_to >= every:
        return Advance(closing, (exported_to, upto), Progress(newest, upto))
    return Advance(closing, None, Progress(newest, exported_to))
