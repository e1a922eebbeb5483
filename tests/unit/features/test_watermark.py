"""The features query's watermark per partition: ``watermark.PartitionClocks``."""

from __future__ import annotations

import pyarrow as pa

from marketpipe.features.watermark import WHOLE_INPUT, PartitionClocks, newest_per_partition

IDLE = 10.0
MIN = 60_000_000  # a minute of event time, in microseconds


def test_the_watermark_follows_the_slowest_partition_not_the_fastest() -> None:
    """A burst reaches the partitions minutes of event time apart: the base is the least
    newest, so the slower partitions' next ticks are not behind it."""
    clocks = PartitionClocks(IDLE)
    clocks.expect([0, 1, 2], now_s=0.0)
    clocks.observe({0: 45 * MIN, 1: 5 * MIN, 2: 20 * MIN}, now_s=1.0)
    assert clocks.base(1.0) == 5 * MIN
    clocks.observe({1: 45 * MIN, 2: 44 * MIN}, now_s=1.5)
    assert clocks.base(1.5) == 44 * MIN


def test_a_partition_that_brought_nothing_yet_holds_the_watermark_until_it_is_idle() -> None:
    clocks = PartitionClocks(IDLE)
    clocks.expect([0, 1], now_s=100.0)  # at the first batch with ticks
    clocks.observe({0: 45 * MIN}, now_s=100.0)
    assert clocks.base(100.0) is None
    clocks.observe({0: 46 * MIN}, now_s=105.0)
    assert clocks.base(105.0) is None
    assert clocks.base(100.0 + IDLE) == 46 * MIN  # 1 is idle: 0 alone holds it
    clocks.observe({0: 47 * MIN}, now_s=200.0)  # a sparse stream goes on moving it
    assert clocks.base(200.0) == 47 * MIN


def test_a_partition_that_stops_holds_its_newest_then_no_more() -> None:
    clocks = PartitionClocks(IDLE)
    clocks.observe({0: 10 * MIN, 1: 9 * MIN}, now_s=0.0)
    clocks.observe({0: 11 * MIN}, now_s=5.0)
    assert clocks.base(5.0) == 9 * MIN
    clocks.observe({0: 12 * MIN}, now_s=IDLE)
    assert clocks.base(IDLE) == 12 * MIN
    clocks.observe({1: 12 * MIN + 1}, now_s=IDLE + 1)  # back, and holding again
    assert clocks.base(IDLE + 1) == 12 * MIN


def test_after_the_whole_input_paused_every_partition_is_waited_for() -> None:
    """The broker restarting, say: then the checker drains its backlog into the partitions
    unevenly. The first to bring ticks does not move the watermark past the others until they
    have been quiet for ``IDLE`` while it ticked."""
    clocks = PartitionClocks(IDLE)
    clocks.observe({0: 10 * MIN, 1: 10 * MIN}, now_s=0.0)
    clocks.observe({0: 11 * MIN}, now_s=0.0 + IDLE + 1)  # the first batch after the pause
    assert clocks.base(IDLE + 1) == 10 * MIN
    for k in range(1, 20):  # it goes on ticking every half second, alone
        clocks.observe({0: 11 * MIN + k}, now_s=IDLE + 1 + k / 2)
    assert clocks.base(IDLE + 1 + 9.5) == 10 * MIN
    clocks.observe({0: 11 * MIN + 20}, now_s=IDLE + 1 + 10)
    assert clocks.base(IDLE + 1 + 10) == 11 * MIN + 20  # 1 was quiet 10 s of 0's ticking


def test_partitions_it_was_not_told_of_count_once_they_bring_ticks() -> None:
    clocks = PartitionClocks(IDLE)
    clocks.expect([0], now_s=0.0)
    clocks.observe({0: 3 * MIN, 7: 2 * MIN}, now_s=1.0)
    assert clocks.known == {0, 7}
    assert clocks.base(1.0) == 2 * MIN


def test_the_newest_event_time_per_partition() -> None:
    ticks = pa.table({"event_time": [5, 9, 7, 2], "partition": pa.array([0, 0, 1, 2], pa.int32())})
    assert newest_per_partition(ticks) == {0: 9, 1: 7, 2: 2}
    assert newest_per_partition(ticks.drop_columns(["partition"])) == {WHOLE_INPUT: 9}
    assert newest_per_partition(ticks.slice(0, 0)) == {}
