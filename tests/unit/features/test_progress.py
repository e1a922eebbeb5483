"""Which windows each micro-batch closes and exports: the arithmetic of ``progress.advance``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.progress import Advance, Progress, advance

DELAY = 10


def test_the_first_batch_closes_what_the_next_watermark_passes() -> None:
    plan = advance(None, newest_us=100, earliest_end_us=95, delay_us=DELAY)
    assert plan.closing is None  # its windows end at 95 or later, the next watermark is 90
    assert plan.export is None
    assert plan.after == Progress(max_event_us=100, exported_to_us=90, closed_to_us=90)
    plan = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY)
    # From below its earliest window.
    assert plan == Advance((59, 90), (59, 90), Progress(100, 90, 90))


def test_nothing_seen_yet_records_nothing() -> None:
    assert advance(None, None, None, DELAY) == Advance(None, None, None)


def test_a_batch_closes_up_to_the_next_batch_s_watermark() -> None:
    before = Progress(max_event_us=200, exported_to_us=190, closed_to_us=190)
    plan = advance(before, newest_us=230, earliest_end_us=180, delay_us=DELAY)
    assert plan == Advance((190, 220), (190, 220), Progress(230, 220, 220))  # 220: 230 - 10


def test_late_ticks_only_close_nothing_more() -> None:
    before = Progress(max_event_us=200, exported_to_us=190, closed_to_us=190)
    # The newest event time stays, so does the watermark.
    unchanged = Advance(None, None, Progress(200, 190, 190))
    assert advance(before, 120, 130, DELAY) == unchanged
    assert advance(before, None, None, DELAY) == unchanged


def test_final_windows_close_at_once_and_wait_for_an_export_span() -> None:
    before = Progress(max_event_us=200, exported_to_us=150, closed_to_us=190)
    plan = advance(before, newest_us=205, earliest_end_us=200, delay_us=DELAY, every_us=50)
    # Closes what became final since the batch before; 195 - 150 < 50: no export yet.
    assert plan == Advance((190, 195), None, Progress(205, 150, 195))
    assert plan.after is not None
    plan = advance(plan.after, newest_us=212, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert plan == Advance((195, 202), (150, 202), Progress(212, 202, 202))  # all at once


def test_a_first_batch_below_the_span_exports_nothing_and_loses_nothing() -> None:
    plan = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY, every_us=50)
    # From below its earliest window: closed, exported later from there.
    assert plan == Advance((59, 90), None, Progress(100, 59, 90))


def test_a_changed_watermark_delay_neither_skips_nor_repeats_a_window() -> None:
    before = Progress(max_event_us=200, exported_to_us=170, closed_to_us=190)
    lowered = advance(before, newest_us=201, earliest_end_us=200, delay_us=5)
    assert lowered.closing == (190, 196)  # what ended in (190, 195] is final now: not skipped
    assert lowered.export == (170, 196)
    raised = advance(before, newest_us=205, earliest_end_us=200, delay_us=20, every_us=50)
    assert raised.closing is None  # the watermark went back to 185: closed already, not twice
    assert raised.after == Progress(205, 170, 190)
    raised = advance(before, newest_us=205, earliest_end_us=200, delay_us=20)
    assert raised.closing is None
    assert raised.export == (170, 185)  # final under the new delay too
    assert raised.after == Progress(205, 185, 190)


def test_a_replay_with_a_longer_span_leaves_files_the_next_export_rewrites() -> None:
    """Files are named after the span's start: batch N exported (150, 202] under a span of 50,
    then crashed uncommitted; replayed under a span of 100 it exports nothing, and the next
    export starts at 150 again, so it rewrites those files with every window they held."""
    before = Progress(max_event_us=200, exported_to_us=150, closed_to_us=190)
    first = advance(before, newest_us=212, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert first.export == (150, 202)
    replay = advance(before, newest_us=212, earliest_end_us=200, delay_us=DELAY, every_us=100)
    assert replay.export is None
    assert replay.closing == first.closing  # the same indicators
    assert replay.after == Progress(212, 150, 202)
    later = advance(replay.after, newest_us=260, earliest_end_us=250, delay_us=DELAY, every_us=100)
    assert later.export is not None
    assert later.export[0] == first.export[0]  # the same file names
    assert later.export[1] >= first.export[1]  # a superset of what they held


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=400), min_size=0, max_size=8),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=50),
    st.sampled_from([5, 10, 30]),
    st.sampled_from([0, 1, 7, 40]),
)
def test_every_window_is_closed_then_exported_once_and_only_after_it_is_final(
    batches: list[list[int]], delay: int, length: int, every: int
) -> None:
    """Simulate the query: per batch, the watermark is the newest event time of earlier
    batches minus the delay; a tick goes into its tumbling window of ``length`` unless that
    window has ended at or before the watermark (dropped as late). Check what ``advance``
    closes and exports: never a window a later batch changes, never one closed or exported
    twice, none skipped; every final window closes, by the batch after which it is final, and
    is exported once the windows waiting span ``every``."""
    newest: int | None = None
    written: dict[int, int] = {}  # window end -> batch that last changed it
    closed: dict[int, int] = {}  # window end -> first batch that closed it
    exported: dict[int, int] = {}  # window end -> batch that exported it
    before: Progress | None = None
    for batch_id, ticks in enumerate(batches):
        watermark = None if newest is None else newest - delay
        kept = [t for t in ticks if watermark is None or t // length * length + length > watermark]
        ends = [t // length * length + length for t in kept]
        for end in ends:
            written[end] = batch_id
        plan = advance(
            before, max(ticks) if ticks else None, min(ends) if ends else None, delay, every
        )
        if ticks:
            newest = max(ticks) if newest is None else max(newest, *ticks)
        if plan.closing is not None:
            assert newest is not None
            lower, upper = plan.closing
            assert upper == newest - delay  # the next batch's watermark
            if before is not None:
                assert lower == before.closed_to_us  # from where the batch before closed
            for end in written:
                if lower < end <= upper:
                    assert end not in closed, "closed twice"
                    closed[end] = batch_id
        if plan.export is not None:
            assert newest is not None
            lower, upper = plan.export
            assert upper == newest - delay
            assert upper - lower >= every
            if before is not None:
                assert lower == before.exported_to_us  # from where the last export ended
            for end in written:
                if lower < end <= upper:
                    assert end in closed, "exported before it was closed"
                    assert end not in exported, "exported twice"
                    exported[end] = batch_id
        before = plan.after if plan.after is not None else before
    final = None if newest is None else newest - delay  # the next batch's watermark
    for end, batch_id in written.items():
        if end in exported:
            assert batch_id <= exported[end], "changed after it was exported"
        if end in closed:
            assert batch_id <= closed[end], "changed after it was closed"
        if final is not None and end <= final:
            assert end in closed, "never closed"
        if before is not None and end <= before.exported_to_us:
            assert end in exported, "skipped"
    if final is not None and before is not None:
        assert final - before.exported_to_us < max(every, 1)  # the rest waits for a span
