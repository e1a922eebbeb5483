from __future__ import annotations

import numpy as np
import pytest

from marketpipe.ingest.pacing import RELEASE_EVERY_US, Pacer


class FakeClock:
    def __init__(self, start_us: int = 1_000_000_000) -> None:
        self.now = start_us

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(1, int(seconds * 1e6))


def run_for(pacer: Pacer, clock: FakeClock, seconds: float) -> np.ndarray:
    end = clock.now + int(seconds * 1e6)
    out = []
    while clock.now < end:
        times = pacer.next_times()
        assert (times <= clock.now).all(), "event times must never lie in the future"
        out.append(times)
        clock.now += 700  # the work of publishing a batch
    return np.concatenate(out)


@pytest.mark.parametrize("tps", [10, 1000, 50_000])
def test_rate_is_exact_over_time(tps: float) -> None:
    clock = FakeClock()
    pacer = Pacer(tps, clock_us=clock, sleep=clock.sleep)
    start = clock.now
    times = run_for(pacer, clock, 2.0)
    # Exactly the even grid, nothing skipped or doubled; only the final ~1 ms may be unreached.
    assert np.array_equal(times, np.rint(start + np.arange(len(times)) * 1e6 / tps))
    assert 2 * tps - len(times) <= tps * 0.001 + 1


def test_jitter_varies_gaps_but_keeps_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(
        1000, jitter_ms=4.0, rng=np.random.default_rng(1), clock_us=clock, sleep=clock.sleep
    )
    times = run_for(pacer, clock, 5.0)
    gaps = np.diff(times)
    assert abs(len(times) - 5000) <= 5
    assert gaps.std() > 500  # even spacing would give std 0
    assert (gaps >= 0).all()


def test_as_fast_as_possible_hands_out_full_batches() -> None:
    clock = FakeClock()
    pacer = Pacer(0, max_batch=256, clock_us=clock, sleep=clock.sleep)
    assert len(pacer.next_times()) == 256
    assert len(pacer.next_times(limit=10)) == 10


def test_falling_behind_is_caught_up_not_dropped() -> None:
    clock = FakeClock()
    pacer = Pacer(1000, max_batch=100, clock_us=clock, sleep=clock.sleep)
    clock.now += 2_000_000  # stalled for 2 s
    assert pacer.next_times().tolist()[:2] == [clock.now - 2_000_000, clock.now - 1_999_000]
    assert pacer.behind_us() == 1_900_000  # the oldest undelivered tick is slot 100
    got, calls = 100, 1
    while pacer.behind_us():
        got += len(pacer.next_times())
        calls += 1
    assert got == 2000  # every slot before now, in batches of at most 100
    assert calls == 20
    now = clock.now
    # Caught up, the next release comes RELEASE_EVERY_US after the last, with what is due by then.
    assert pacer.next_times().tolist() == [now + 1000 * i for i in range(6)]
    assert clock.now == now + RELEASE_EVERY_US


def test_due_ticks_go_out_in_batches_at_most_every_5_ms() -> None:
    clock = FakeClock()
    pacer = Pacer(10_000, clock_us=clock, sleep=clock.sleep)
    start = clock.now
    releases = []
    while clock.now < start + 1_000_000:
        times = pacer.next_times()
        releases.append((clock.now, times))
        clock.now += 50  # the work of publishing a batch
    assert 195 <= len(releases) <= 201  # not one round per tick
    assert all(now - times[0] <= RELEASE_EVERY_US for now, times in releases)  # none held longer
    times = np.concatenate([t for _, t in releases])
    assert np.array_equal(times, start + np.arange(len(times)) * 100)  # the grid, untouched


def test_rejects_negative_rate() -> None:
    with pytest.raises(ValueError, match="tps"):
        Pacer(-1)
