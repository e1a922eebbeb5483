"""Which windows a micro-batch of the features query closes: pure arithmetic on event times.

The features query writes a window's row whenever the window changes; a window is final once
the event-time watermark has passed its end, because from then on every tick for it is dropped
(``aggregate.step``). The watermark for micro-batch ``N + 1`` is ``newest event time seen up to
and including batch N - delay`` (one input, one watermark: Spark's rule), so once batch ``N``
has been written every window ending at or before that is final, and batch ``N`` exports it
itself: closed windows leave with the batch that closed them, not with the next one (which
might not come for a while: a market closes, a bounded run ends).

Batch ``N`` therefore exports the windows that ended in ``(exported_to, newest_N - delay]`` and
records how far it got, with the newest event time (the next batch's watermark base). The
record is per batch and a batch reads the record of the batch before it, so a replayed batch
(after a crash) exports exactly the same windows again, into the same files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """After a micro-batch: the newest event time seen so far, and the end up to which closed
    windows have been exported (epoch microseconds)."""

    max_event_us: int
    exported_to_us: int


def advance(
    before: Progress | None, newest_us: int | None, earliest_end_us: int | None, delay_us: int
) -> tuple[tuple[int, int] | None, Progress | None]:
    """For one micro-batch: the window ends ``(after, upto]`` it closes (None: none), and the
    progress to record after it (None: nothing seen yet).

    ``before`` is the progress after the previous batch (None for the query's first batch with
    data); ``newest_us`` the newest event time of this batch's ticks and ``earliest_end_us``
    the earliest ``window_end`` among the rows it wrote (None for an empty batch);
    ``delay_us`` the watermark delay.
    """
    if before is None:
        if newest_us is None or earliest_end_us is None:
            return None, None
        # Nothing was exported before: every window this batch wrote ends at or after its
        # earliest window end, and a later batch's late tick can only open a window that ends
        # after the next watermark.
        upto = newest_us - delay_us
        start = min(earliest_end_us - 1, upto)
        return ((start, upto) if upto > start else None), Progress(newest_us, upto)
    newest = before.max_event_us if newest_us is None else max(before.max_event_us, newest_us)
    upto = newest - delay_us  # the next batch's watermark
    if upto > before.exported_to_us:
        return (before.exported_to_us, upto), Progress(newest, upto)
    return None, Progress(newest, before.exported_to_us)
