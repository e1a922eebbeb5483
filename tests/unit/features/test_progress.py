"""Which windows each micro-batch closes: the arithmetic of ``progress.advance``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.progress import Progress, advance

DELAY = 10


def test_the_first_batch_closes_what_the_next_watermark_passes() -> None:
    closing, after = advance(None, newest_us=100, earliest_end_us=95, delay_us=DELAY)
    assert closing is None  # its windows end at 95 or later, the next watermark is 90
    assert after == Progress(max_event_us=100, exported_to_us=90)
    closing, after = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY)
    assert closing == (59, 90)  # from below its earliest window to the next watermark
    assert after == Progress(max_event_us=100, exported_to_us=90)


def test_nothing_seen_yet_records_nothing() -> None:
    assert advance(None, None, None, DELAY) == (None, None)


def test_a_batch_closes_up_to_the_next_batch_s_watermark() -> None:
    before = Progress(max_event_us=200, exported_to_us=150)
    closing, after = advance(before, newest_us=230, earliest_end_us=180, delay_us=DELAY)
    assert closing == (150, 220)  # windows ending in (150, 220]: 230 - 10
    assert after == Progress(max_event_us=230, exported_to_us=220)


def test_late_ticks_only_close_nothing_more() -> None:
    before = Progress(max_event_us=200, exported_to_us=190)
    # The newest event time stays, so does the watermark.
    assert advance(before, 120, 130, DELAY) == (None, Progress(200, 190))
    assert advance(before, None, None, DELAY) == (None, Progress(200, 190))


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=400), min_size=0, max_size=8),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=50),
    st.sampled_from([5, 10, 30]),
)
def test_every_window_is_exported_once_and_only_after_spark_finalised_it(
    batches: list[list[int]], delay: int, length: int
) -> None:
    """Simulate the query: per batch, the watermark is the newest event time of earlier
    batches minus the delay; a tick goes into its tumbling window of ``length`` unless that
    window has ended at or before the watermark (dropped as late). Check what ``advance``
    exports: never a window a later batch changes, never one twice, none skipped."""
    newest: int | None = None
    written: dict[int, int] = {}  # window end -> batch that last changed it
    exported: dict[int, int] = {}  # window end -> batch that exported it
    before: Progress | None = None
    for batch_id, ticks in enumerate(batches):
        watermark = None if newest is None else newest - delay
        kept = [t for t in ticks if watermark is None or t // length * length + length > watermark]
        ends = [t // length * length + length for t in kept]
        for end in ends:
            written[end] = batch_id
        closing, after = advance(
            before, max(ticks) if ticks else None, min(ends) if ends else None, delay
        )
        if ticks:
            newest = max(ticks) if newest is None else max(newest, *ticks)
        if closing is not None:
            assert newest is not None
            assert closing[1] == newest - delay  # the next batch's watermark
            for end in written:
                if closing[0] < end <= closing[1]:
                    assert end not in exported, "exported twice"
                    exported[end] = batch_id
        before = after if after is not None else before
    final = None if newest is None else newest - delay  # the next batch's watermark
    for end, batch_id in written.items():
        if end in exported:
            assert batch_id <= exported[end], "changed after it was exported"
        if before is not None and end <= before.exported_to_us:
            assert end in exported, "skipped"
    if final is not None and before is not None:
        assert before.exported_to_us == final  # everything final is out
