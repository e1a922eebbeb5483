"""Which windows a micro-batch of the features query closes, and which it exports to cold
storage: pure arithmetic on event times.

The features query writes a window's row whenever the window changes; a window is final once
the event-time watermark has passed its end, because from then on every tick for it is dropped
(``aggregate.step``). The watermark for micro-batch ``N + 1`` is ``newest event time seen up to
and including batch N - delay`` (one input, one watermark: Spark's rule), so once batch ``N``
has been written every window ending at or before that is final.

Final windows are exported to cold Parquet (a file per symbol) in spans of at least
``every_us`` of event time: batch ``N`` exports the windows that ended in ``(exported_to,
newest_N - delay]`` once that span is ``every_us`` or more, and records how far it got, with
the newest event time (the next batch's watermark base). Exporting every micro-batch wrote a
file per symbol and second (50 PUTs a second at 50 symbols), most of the features job's time
in a run of every stage on one machine; in spans of 10 s it writes a tenth of the files.

Until they are exported, final windows are *closing*: every batch takes ``(exported_to,
newest_N - delay]`` (its indicators on closed bars are recomputed from the state before them,
so a bar seen twice gives the same row). Closing from the export point, not from the previous
batch's watermark, keeps it right when the watermark delay changes between runs.

The record is per batch and a batch reads the record of the batch before it, so a replayed
batch (after a crash) closes the same windows. Export files are named after the span's start,
which comes from that record: a replay that exports rewrites the same files, and one that no
longer exports (``every_us`` raised before the restart) leaves them for the next export, which
starts at the same point, holds every window they hold, and rewrites them whole.
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
    """What one micro-batch does with final windows, and the progress to record after it."""

    closing: Span | None  # final windows not exported yet (None: none)
    export: bool  # whether the batch exports them (``closing``) to cold storage
    after: Progress | None  # None: nothing seen yet


def advance(
    before: Progress | None,
    newest_us: int | None,
    earliest_end_us: int | None,
    delay_us: int,
    every_us: int = 0,
) -> Advance:
    """For one micro-batch: the window ends it closes, whether it exports them, and the
    progress to record.

    ``before`` is the progress after the previous batch (None for the query's first batch with
    data); ``newest_us`` the newest event time of this batch's ticks and ``earliest_end_us``
    the earliest ``window_end`` among the rows it wrote (None for an empty batch);
    ``delay_us`` the watermark delay; ``every_us`` the least span of window ends an export
    takes (0: every batch that closes windows exports them).
    """
    if before is None:
        if newest_us is None or earliest_end_us is None:
            return Advance(None, False, None)
        # Nothing was exported before: every window this batch wrote ends at or after its
        # earliest window end, and a later batch's late tick can only open a window that ends
        # after the next watermark.
        upto = newest_us - delay_us
        exported_to = min(earliest_end_us - 1, upto)
        newest = newest_us
    else:
        newest = before.max_event_us if newest_us is None else max(before.max_event_us, newest_us)
        upto = newest - delay_us  # the next batch's watermark
        exported_to = before.exported_to_us
    if upto <= exported_to:
        return Advance(None, False, Progress(newest, exported_to))
    if upto - exported_to >= every_us:
        return Advance((exported_to, upto), True, Progress(newest, upto))
    return Advance((exported_to, upto), False, Progress(newest, exported_to))
