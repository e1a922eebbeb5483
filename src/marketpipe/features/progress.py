"""Which windows a micro-batch of the features query closes: pure arithmetic on event times.

The features query runs in ``update`` mode: it writes a window's row whenever the window
changes, and Spark never says when a window is final. It is final once the event-time
watermark has passed its end: from then on Spark drops every tick for it. Spark's watermark
for micro-batch ``N`` is ``newest event time seen in batches before N - delay`` (one input, one
watermark), so the job can follow it without asking Spark, from the ``last_event_time`` of the
rows each batch writes (the newest event time of a batch is the newest ``last_event_time`` of
its rows: every tick lands in some window, and a tick dropped as late is older than the
watermark anyway).

After batch ``N`` has been written, every window ending at or before batch ``N``'s watermark is
final, whichever of Spark's two watermarks (for late ticks, for evicting state) filters late
ticks in batch ``N``. Batch ``N`` therefore exports the windows that ended in
``(exported_to, watermark_N]`` and records how far it got. The record is per batch and a batch
reads the record of the batch before it, so a replayed batch (after a crash) exports exactly
the same windows again, into the same files.
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
    data); ``newest_us`` the newest ``last_event_time`` and ``earliest_end_us`` the earliest
    ``window_end`` among the rows this batch wrote (None for an empty batch); ``delay_us`` the
    watermark delay.
    """
    if before is None:
        if newest_us is None or earliest_end_us is None:
            return None, None
        # The first batch closes nothing (Spark had no watermark yet). Every window written
        # from now on ends after this batch's earliest window end, or after the next batch's
        # watermark (a later batch's late tick may open a window that ends earlier).
        start = min(earliest_end_us - 1, newest_us - delay_us)
        return None, Progress(newest_us, start)
    watermark = before.max_event_us - delay_us  # Spark's, for this batch
    newest = before.max_event_us if newest_us is None else max(before.max_event_us, newest_us)
    if watermark > before.exported_to_us:
        return (before.exported_to_us, watermark), Progress(newest, watermark)
    return None, Progress(newest, before.exported_to_us)
