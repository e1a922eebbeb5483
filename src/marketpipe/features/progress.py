"""Which windows a micro-batch of the features query closes, and which it exports to cold
storage: pure arithmetic on event times.

The features query writes a window's row whenever the window changes; a window is final once
the event-time watermark has passed its end, because from then on every tick for it is dropped
(``aggregate.step``). The watermark for micro-batch ``N + 1`` is ``base_N - delay``, the base
being what batch ``N`` recorded: the slowest partition's newest event time (``watermark``),
never lower than the base before. So once batch ``N`` has been written every window ending at
or before that is final. Until every partition has been heard from (or gone idle) there is no
base (``NO_BASE``): nothing closes, and the batches record where the windows they wrote begin.

Final windows are exported to cold Parquet (a file per symbol) in spans of at least
``every_us`` of event time: batch ``N`` exports the windows that ended in ``(exported_to,
base_N - delay]`` once that span is ``every_us`` or more, and records how far it got, with
the base. Exporting every micro-batch wrote a file per symbol and second (50 PUTs a second at
50 symbols), most of the features job's time in a run of every stage on one machine; in spans
of 10 s it writes a tenth of the files.

Indicators need final bars too, and cannot wait for the export: batch ``N`` *closes* the
windows that ended in ``(closed_to, base_N - delay]`` and records ``closed_to`` as well. Both
points are recorded, not derived from the base and today's delay, so a watermark delay changed
between runs neither skips windows (lowered) nor closes any twice (raised). A batch that
exports recomputes the indicators of the whole exported span (from the state before it: a bar
seen twice gives the same row), so their cold file is complete; the other batches touch only
what became final since the batch before (recomputing from the export point every batch, until
the export, cost the features job its 50k ticks/s on a 0.5 s trigger).

The features job writes an export in the background (``job._Export``): the batch that starts
it records the export point where it was, and once the files are there the same record is
written again with the span's end, which the next batch starts from; while one export is being
written no other is planned (``every_us`` out of reach).

The record is per batch and a batch reads the record of the batch before it, and a replayed
batch (after a crash) records at least the base its first attempt did (``next_base``), so it
closes and exports the same windows, or more. Export files are named after the span's start,
which comes from that record: a replay that exports rewrites the same files, and one that no
longer exports (``every_us`` raised before the restart) leaves them for the next export, which
starts at the same point, holds every window they hold, and rewrites them whole.
"""

from __future__ import annotations

from dataclasses import dataclass

Span = tuple[int, int]  # window ends (after, upto]


#: The base recorded before the watermark has one (``watermark.PartitionClocks`` still waits
#: for a partition): the epoch, so the watermark is before every tick and closes nothing.
NO_BASE = 0


@dataclass(frozen=True)
class Progress:
    """After a micro-batch: the event time the next batch's watermark trails (its base:
    ``NO_BASE`` until there is one), the end up to which final windows have been exported,
    and the end up to which they have been closed (epoch microseconds; ``exported_to_us <=
    closed_to_us``)."""

    base_us: int
    exported_to_us: int
    closed_to_us: int


@dataclass(frozen=True)
class Advance:
    """What one micro-batch does with final windows, and the progress to record after it."""

    closing: Span | None  # windows final since the batch before (None: none)
    export: Span | None  # final windows the batch exports to cold storage (None: none)
    after: Progress | None  # None: nothing written yet


def next_base(seen_us: int, slowest_us: int | None, recorded_us: int | None = None) -> int:
    """The base a micro-batch leaves the next one's watermark: the slowest partition's newest
    event time (``watermark.PartitionClocks``; None while one is waited for), never below the
    batch's own base ``seen_us`` nor, for a batch replayed after a crash, below the base its
    first attempt recorded (``recorded_us``). That attempt may have closed and exported
    windows up to it, and the clocks, kept in memory, start over with the replay: a lower
    base would let later ticks into closed windows and close them again."""
    return max(x for x in (seen_us, slowest_us, recorded_us) if x is not None)


def advance(
    before: Progress | None,
    base_us: int | None,
    earliest_end_us: int | None,
    delay_us: int,
    every_us: int = 0,
) -> Advance:
    """For one micro-batch: the window ends it closes, those it exports, and the progress to
    record.

    ``before`` is the progress after the previous batch (None for the query's first batch
    that wrote rows); ``base_us`` what the next batch's watermark trails as this batch leaves
    it (None: no base yet) and ``earliest_end_us`` the earliest ``window_end`` among the rows
    it wrote (None for an empty batch); ``delay_us`` the watermark delay; ``every_us`` the
    least span of window ends an export takes (0: every batch that closes windows exports
    them).
    """
    seen = NO_BASE if before is None else before.base_us
    base = seen if base_us is None else max(seen, base_us)
    upto = base - delay_us  # the next batch's watermark
    if seen == NO_BASE:
        # Nothing was closed before: every window written so far ends after the earliest end
        # written, and a later batch's late tick can only open a window that ends after the
        # next watermark (once there is one).
        firsts = [e - 1 for e in (earliest_end_us,) if e is not None]
        firsts += [] if before is None else [before.closed_to_us]
        if not firsts:
            return Advance(None, None, None)
        exported_to = closed_to = min(firsts) if base == NO_BASE else min(*firsts, upto)
        if base == NO_BASE:
            return Advance(None, None, Progress(NO_BASE, exported_to, closed_to))
    else:
        assert before is not None
        exported_to, closed_to = before.exported_to_us, before.closed_to_us
    closing = (closed_to, upto) if upto > closed_to else None
    export = (exported_to, upto) if upto > exported_to and upto - exported_to >= every_us else None
    after = Progress(base, exported_to if export is None else upto, max(closed_to, upto))
    return Advance(closing, export, after)
