"""Which windows each micro-batch closes: the arithmetic of ``progress.advance``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.features.progress import Progress, advance

DELAY = 10


def test_the_first_batch_closes_nothing_and_starts_below_everything_it_could_write() -> None:
    closing, after = advance(None, newest_us=100, earliest_end_us=95, delay_us=DELAY)
    assert closing is None
    assert after == Progress(max_event_us=100, exported_to_us=90)  # the next watermark
    closing, after = advance(None, newest_us=100, earliest_end_us=60, delay_us=DELAY)
    assert after == Progress(max_event_us=100, exported_to_us=59)  # its earliest window


def test_nothing_seen_yet_records_nothing() -> None:
    assert advance(None, None, None, DELAY) == (None, None)


def test_a_batch_closes_up_to_the_watermark_spark_used_for_it() -> None:
    before = Progress(max_event_us=200, exported_to_us=150)
    closing, after = advance(before, newest_us=230, earliest_end_us=180, delay_us=DELAY)
    assert closing == (150, 190)  # windows ending in (150, 190]: 200 - 10
    assert after == Progress(max_event_us=230, exported_to_us=190)


def test_an_empty_batch_still_closes_what_the_watermark_passed() -> None:
    before = Progress(max_event_us=200, exported_to_us=150)
    assert advance(before, None, None, DELAY) == ((150, 190), Progress(200, 190))


def test_no_progress_of_the_watermark_closes_nothing() -> None:
    before = Progress(max_event_us=200, exported_to_us=190)
    # Late ticks only: the newest event time stays, so does the watermark.
    assert advance(before, 120, 130, DELAY) == (None, Progress(200, 190))


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
    """Simulate Spark: per batch, the watermark is the newest event time of earlier batches
    minus the delay; a tick goes into its tumbling window of ``length`` unless that window has
    ended at or before the watermark (dropped as late). Check what ``advance`` exports."""
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
            before, max(kept) if kept else None, min(ends) if ends else None, delay
        )
        if closing is not None:
            assert watermark is not None
            assert closing[1] == watermark
            for end in written:
                if closing[0] < end <= closing[1]:
                    assert end not in exported, "exported twice"
                    exported[end] = batch_id
        if ticks:
            newest = max(ticks) if newest is None else max(newest, *ticks)
        before = after if after is not None else before
    final = None if newest is None else newest - delay  # the next batch's watermark
    for end, batch_id in written.items():
        if end in exported:
            assert batch_id <= exported[end], "changed after it was exported"
        if before is not None and end <= before.exported_to_us:
            assert end in exported, "skipped"
    if final is not None and before is not None:
        assert before.exported_to_us <= final
