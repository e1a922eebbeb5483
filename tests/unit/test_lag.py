from __future__ import annotations

from marketpipe.lag import LagTrend


def feed(trend: LagTrend, lags: list[int], every_s: float = 5.0) -> list[tuple[float, str]]:
    said = []
    for i, lag in enumerate(lags):
        line = trend.observe(i * every_s, lag)
        if line is not None:
            said.append((i * every_s, line))
    return said


def test_a_growing_backlog_is_said_once_then_repeated_then_cleared() -> None:
    trend = LagTrend(window_s=30, min_lag=10_000, repeat_s=60)
    growing = [20_000 + 1_000 * i for i in range(30)]  # +200/s for 150 s
    said = feed(trend, [*growing, 5_000])
    first_t, first = said[0]
    assert first_t == 25.0  # a window's worth of samples first (80% of 30 s)
    assert first.startswith("falling behind: lag 25,000 (+5,000 in 25 s, 200/s")
    assert [t for t, line in said if line.startswith("falling")] == [25.0, 85.0, 145.0]
    last_t, last = said[-1]
    assert (last_t, last) == (150.0, "caught up: lag 5,000 after 125 s behind")


def test_a_large_steady_or_shrinking_lag_is_not_behind() -> None:
    assert feed(LagTrend(), [50_000] * 20) == []
    assert feed(LagTrend(), [50_000 - 1_000 * i for i in range(20)]) == []


def test_a_small_growing_lag_is_not_news() -> None:
    assert feed(LagTrend(min_lag=10_000), [100 * i for i in range(50)]) == []
