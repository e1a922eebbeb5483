"""Which windows each micro-batch closes and exports: the arithmetic of ``progress.advance``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.progress import NO_BASE, Advance, Progress, advance, next_base

DELAY = 10


def test_the_first_batch_closes_what_the_next_watermark_passes() -> None:
    plan = advance(None, base_us=100, earliest_end_us=95, delay_us=DELAY)
    assert plan.closing is None  # its windows end at 95 or later, the next watermark is 90
    assert plan.export is None
    assert plan.after == Progress(base_us=100, exported_to_us=90, closed_to_us=90)
    plan = advance(None, base_us=100, earliest_end_us=60, delay_us=DELAY)
    # From below its earliest window.
    assert plan == Advance((59, 90), (59, 90), Progress(100, 90, 90))


def test_nothing_seen_yet_records_nothing() -> None:
    assert advance(None, None, None, DELAY) == Advance(None, None, None)


def test_a_batch_closes_up_to_the_next_batch_s_watermark() -> None:
    before = Progress(base_us=200, exported_to_us=190, closed_to_us=190)
    plan = advance(before, base_us=230, earliest_end_us=180, delay_us=DELAY)
    assert plan == Advance((190, 220), (190, 220), Progress(230, 220, 220))  # 220: 230 - 10


def test_late_ticks_only_close_nothing_more() -> None:
    before = Progress(base_us=200, exported_to_us=190, closed_to_us=190)
    # The newest event time stays, so does the watermark.
    unchanged = Advance(None, None, Progress(200, 190, 190))
    assert advance(before, 120, 130, DELAY) == unchanged
    assert advance(before, None, None, DELAY) == unchanged


def test_final_windows_close_at_once_and_wait_for_an_export_span() -> None:
    before = Progress(base_us=200, exported_to_us=150, closed_to_us=190)
    plan = advance(before, base_us=205, earliest_end_us=200, delay_us=DELAY, every_us=50)
    # Closes what became final since the batch before; 195 - 150 < 50: no export yet.
    assert plan == Advance((190, 195), None, Progress(205, 150, 195))
    assert plan.after is not None
    plan = advance(plan.after, base_us=212, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert plan == Advance((195, 202), (150, 202), Progress(212, 202, 202))  # all at once


def test_a_first_batch_below_the_span_exports_nothing_and_loses_nothing() -> None:
    plan = advance(None, base_us=100, earliest_end_us=60, delay_us=DELAY, every_us=50)
    # From below its earliest window: closed, exported later from there.
    assert plan == Advance((59, 90), None, Progress(100, 59, 90))


def test_a_changed_watermark_delay_neither_skips_nor_repeats_a_window() -> None:
    before = Progress(base_us=200, exported_to_us=170, closed_to_us=190)
    lowered = advance(before, base_us=201, earliest_end_us=200, delay_us=5)
    assert lowered.closing == (190, 196)  # what ended in (190, 195] is final now: not skipped
    assert lowered.export == (170, 196)
    raised = advance(before, base_us=205, earliest_end_us=200, delay_us=20, every_us=50)
    assert raised.closing is None  # the watermark went back to 185: closed already, not twice
    assert raised.after == Progress(205, 170, 190)
    raised = advance(before, base_us=205, earliest_end_us=200, delay_us=20)
    assert raised.closing is None
    assert raised.export == (170, 185)  # final under the new delay too
    assert raised.after == Progress(205, 185, 190)


def test_a_replay_with_a_longer_span_leaves_files_the_next_export_rewrites() -> None:
    """Files are named after the span's start: batch N exported (150, 202] under a span of 50,
    then crashed uncommitted; replayed under a span of 100 it exports nothing, and the next
    export starts at 150 again, so it rewrites those files with every window they held."""
    before = Progress(base_us=200, exported_to_us=150, closed_to_us=190)
    first = advance(before, base_us=212, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert first.export == (150, 202)
    replay = advance(before, base_us=212, earliest_end_us=200, delay_us=DELAY, every_us=100)
    assert replay.export is None
    assert replay.closing == first.closing  # the same indicators
    assert replay.after == Progress(212, 150, 202)
    later = advance(replay.after, base_us=260, earliest_end_us=250, delay_us=DELAY, every_us=100)
    assert later.export is not None
    assert later.export[0] == first.export[0]  # the same file names
    assert later.export[1] >= first.export[1]  # a superset of what they held


def test_without_a_base_nothing_closes_and_the_earliest_window_written_is_kept() -> None:
    """While a partition is waited for there is no watermark: the batches record where the
    windows they wrote begin, an earlier one included, and the first base closes from there."""
    first = advance(None, None, earliest_end_us=300, delay_us=DELAY)
    assert first == Advance(None, None, Progress(NO_BASE, 299, 299))
    earlier = advance(first.after, None, earliest_end_us=120, delay_us=DELAY)
    assert earlier == Advance(None, None, Progress(NO_BASE, 119, 119))
    assert advance(earlier.after, None, None, DELAY) == Advance(None, None, earlier.after)
    based = advance(earlier.after, base_us=350, earliest_end_us=400, delay_us=DELAY)
    assert based == Advance((119, 340), (119, 340), Progress(350, 340, 340))


def test_a_replay_records_at_least_the_base_its_first_attempt_did() -> None:
    """A batch replayed after a crash starts with fresh partition clocks, which may wait for a
    partition again: with the base its first attempt recorded, it closes and exports what
    that attempt did. Without it, it would record a lower base, and the next batch would take
    ticks into windows already closed and exported."""
    before = Progress(base_us=200, exported_to_us=150, closed_to_us=190)
    first = advance(before, next_base(200, 260), earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert first == Advance((190, 250), (150, 250), Progress(260, 250, 250))
    assert first.after is not None
    replay = next_base(200, None, recorded_us=first.after.base_us)
    assert advance(before, replay, earliest_end_us=200, delay_us=DELAY, every_us=50) == first
    forgetful = advance(before, next_base(200, None), 200, delay_us=DELAY, every_us=50)
    assert forgetful.after == before  # what the next batch would have started from
    assert next_base(200, 260, recorded_us=230) == 260  # a replay may go further, never back


@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=8),
            st.none() | st.integers(min_value=0, max_value=60),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=50),
    st.sampled_from([5, 10, 30]),
    st.sampled_from([0, 1, 7, 40]),
)
def test_every_window_is_closed_then_exported_once_and_only_after_it_is_final(
    batches: list[tuple[list[int], int | None]], delay: int, length: int, every: int
) -> None:
    """Simulate the query: per batch, the watermark is the base recorded by the batch before
    minus the delay (none until there is a base); a tick goes into its tumbling window of
    ``length`` unless that window has ended at or before the watermark (dropped as late). The
    base a batch passes trails the newest event time so far by some lag (the slowest
    partition's), or is None (a partition not heard from yet). Check what ``advance`` closes
    and exports: never a window a later batch changes, never one closed or exported twice,
    none skipped; every final window closes, by the batch after which it is final, and is
    exported once the windows waiting span ``every``."""
    newest: int | None = None
    base: int | None = None  # what the next watermark trails
    written: dict[int, int] = {}  # window end -> batch that last changed it
    closed: dict[int, int] = {}  # window end -> first batch that closed it
    exported: dict[int, int] = {}  # window end -> batch that exported it
    before: Progress | None = None
    for batch_id, (ticks, lag) in enumerate(batches):
        watermark = None if base is None else base - delay
        kept = [t for t in ticks if watermark is None or t // length * length + length > watermark]
        ends = [t // length * length + length for t in kept]
        for end in ends:
            written[end] = batch_id
        if ticks:
            newest = max(ticks) if newest is None else max(newest, *ticks)
        passed = None if lag is None or newest is None else newest - lag
        if passed is not None:
            base = passed if base is None else max(base, passed)
        plan = advance(before, passed, min(ends) if ends else None, delay, every)
        if plan.closing is not None:
            assert base is not None
            lower, upper = plan.closing
            assert upper == base - delay  # the next batch's watermark
            if before is not None and before.base_us != NO_BASE:
                assert lower == before.closed_to_us  # from where the batch before closed
            else:  # the first to close: from the earliest window written on
                assert lower == min(min(written) - 1, upper)
            for end in written:
                if lower < end <= upper:
                    assert end not in closed, "closed twice"
                    closed[end] = batch_id
        if plan.export is not None:
            assert base is not None
            lower, upper = plan.export
            assert upper == base - delay
            assert upper - lower >= every
            if before is not None and before.base_us != NO_BASE:
                assert lower == before.exported_to_us  # from where the last export ended
            for end in written:
                if lower < end <= upper:
                    assert end in closed, "exported before it was closed"
                    assert end not in exported, "exported twice"
                    exported[end] = batch_id
        before = plan.after if plan.after is not None else before
    final = None if base is None else base - delay  # the next batch's watermark
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
