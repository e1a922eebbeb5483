"""The producer's generated history: past event times at the history rate, all due at once,
then the live schedule from the moment it was made, without a gap or an overlap."""

from __future__ import annotations

import numpy as np
import pytest

from marketpipe.ingest.pacing import HistoryThenLive, Pacer, schedule


class Clock:
    def __init__(self, now_us: int) -> None:
        self.now = now_us

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1e6)


def test_without_history_the_schedule_is_the_live_pacer() -> None:
    clock = Clock(1_000_000_000)
    s = schedule(100, 0, 64, np.random.default_rng(1), clock_us=clock, sleep=clock.sleep)
    assert isinstance(s, Pacer)


def test_history_then_live() -> None:
    start = 1_700_000_000_000_000
    clock = Clock(start)
    s = schedule(
        1000, 0, 256, np.random.default_rng(1), history_s=60, history_tps=10,
        clock_us=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert isinstance(s, HistoryThenLive)
    history: list[int] = []
    while s.in_history:
        assert s.behind_us() == 0  # a backlog by design is not "behind"
        history += s.next_times().tolist()
    assert clock.now == start  # all of it due at once: nothing waited
    assert len(history) == 600
    assert history == sorted(history)
    assert history[0] == start - 60_000_000
    assert np.all(np.diff(history) == 100_000)  # 10 per second of market time
    assert history[-1] < start
    clock.now += 5_000  # 5 ms later: the live slots since the start are due
    live = s.next_times().tolist()
    assert live[0] == start
    assert len(live) == 6


def test_history_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="history_tps"):
        schedule(0, 0, 64, np.random.default_rng(1), history_s=10)
