"""Which windows each micro-batch closes and exports: the arithmetic of ``progress.advance``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.progress import Advance, Progress, advance

DELAY = 10


def test_the_first_batch_closes_what_the_next_watermark_passes() -> None:
    plan = advance(None, newest_us=100, earliest_end_us=95, delay_us=DELAY)
    assert plan.closing is None
    assert plan.export is None
    assert plan.after == Progress(max_event_us=100, exported_to_us=90)
    plan = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY)
    assert plan.closing == plan.export == (59, 90)  # from below its earliest window
    assert plan.after == Progress(max_event_us=100, exported_to_us=90)


def test_nothing_seen_yet_records_nothing() -> None:
    assert advance(None, None, None, DELAY) == Advance(None, None, None)


def test_a_batch_closes_up_to_the_next_batch_s_watermark() -> None:
    before = Progress(max_event_us=200, exported_to_us=190)
    plan = advance(before, newest_us=230, earliest_end_us=180, delay_us=DELAY)
    assert plan.closing == plan.export == (190, 220)  # windows ending in (190, 220]: 230 - 10
    assert plan.after == Progress(max_event_us=230, exported_to_us=220)


def test_late_ticks_only_close_nothing_more() -> None:
    before = Progress(max_event_us=200, exported_to_us=190)
    # The newest event time stays, so does the watermark.
    assert advance(before, 120, 130, DELAY) == Advance(None, None, Progress(200, 190))
    assert advance(before, None, None, DELAY) == Advance(None, None, Progress(200, 190))


def test_closed_windows_wait_for_an_export_span_but_close_every_batch() -> None:
    before = Progress(max_event_us=200, exported_to_us=150)  # 150..190 closed, not exported
    plan = advance(before, newest_us=205, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert plan.closing == (190, 195)  # indicators follow the watermark
    assert plan.export is None  # (150, 195] spans 45 < 50
    assert plan.after == Progress(205, 150)
    assert plan.after is not None
    plan = advance(plan.after, newest_us=212, earliest_end_us=200, delay_us=DELAY, every_us=50)
    assert plan.closing == (195, 202)
    assert plan.export == (150, 202)  # all of it at once, from where the last export ended
    assert plan.after == Progress(212, 202)


def test_a_first_batch_below_the_span_exports_nothing_and_loses_nothing() -> None:
    plan = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY, every_us=50)
    assert plan.closing == (59, 90)
    assert plan.export is None
    assert plan.after == Progress(100, 59)  # from below its earliest window, later


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
def test_every_window_is_closed_and_exported_once_and_only_after_it_is_final(
    batches: list[list[int]], delay: int, length: int, every: int
) -> None:
    """Simulate the query: per batch, the watermark is the newest event time of earlier
    batches minus the delay; a tick goes into its tumbling window of ``length`` unless that
    window has ended at or before the watermark (dropped as late). Check what ``advance``
    closes and exports: never a window a later batch changes, never one twice, none skipped;
    every final window is closed by the batch after which it is final, and exported once the
    windows waiting span ``every``."""
    newest: int | None = None
    written: dict[int, int] = {}  # window end -> batch that last changed it
    closed: dict[int, int] = {}  # window end -> batch that closed it
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
        for span, seen in ((plan.closing, closed), (plan.export, exported)):
            if span is not None:
                assert newest is not None
                assert span[1] == newest - delay  # the next batch's watermark
                for end in written:
                    if span[0] < end <= span[1]:
                        assert end not in seen, "twice"
                        seen[end] = batch_id
        if plan.export is not None:
            assert plan.export[1] - plan.export[0] >= every
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
