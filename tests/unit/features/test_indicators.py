"""Indicators against values computed by hand from the formulas in the module docstring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketpipe.features.indicators import (
    Ema,
    IndicatorState,
    WilderRsi,
    extend_series,
    indicators,
)


def test_sma_and_ema_by_hand() -> None:
    rows = indicators([1.0, 2.0, 3.0, 4.0, 5.0], sma_n=3, ema_n=3)
    assert [r.sma for r in rows] == [None, None, 2.0, 3.0, 4.0]
    # alpha = 0.5, seeded with SMA(1,2,3) = 2: then 0.5*4 + 0.5*2 = 3, 0.5*5 + 0.5*3 = 4.
    assert [r.ema for r in rows] == [None, None, 2.0, 3.0, 4.0]
    ema = Ema(3)
    for x in (10.0, 10.0, 10.0):
        ema.update(x)
    assert ema.update(14.0) == 12.0


def test_wilder_rsi_by_hand() -> None:
    rsi = WilderRsi(2)
    # changes +1, -1 -> first averages 0.5 / 0.5 -> 50; then +2: gain (0.5 + 2) / 2 = 1.25,
    # loss (0.5 + 0) / 2 = 0.25 -> RS 5 -> 100 - 100/6.
    assert [rsi.update(c) for c in (1.0, 2.0, 1.0, 3.0)] == [
        None,
        None,
        50.0,
        pytest.approx(250 / 3),
    ]


def test_rsi_edges() -> None:
    up = WilderRsi(14)
    assert [up.update(float(c)) for c in range(20)][-1] == 100.0
    flat = WilderRsi(14)
    assert [flat.update(5.0) for _ in range(20)][-1] == 50.0
    zigzag = WilderRsi(14)
    values = [zigzag.update(100.0 + (i % 2)) for i in range(60)]
    assert values[-1] == pytest.approx(50.0, abs=4.0)  # equal ups and downs hover at 50


def test_macd_of_a_straight_line_is_exact() -> None:
    """EMA(n) of c_t = t settles at t - (n-1)/2 from its seed on, so MACD = 12.5 - 5.5 = 7."""
    rows = indicators([float(t) for t in range(60)])
    assert all(r.macd is None for r in rows[:25])
    assert all(r.macd == pytest.approx(7.0) for r in rows[25:])
    assert rows[33].macd_signal == pytest.approx(7.0)  # 9 MACD values: signal seeded
    assert rows[32].macd_signal is None
    assert all(r.macd_hist == pytest.approx(0.0, abs=1e-9) for r in rows[33:])


def test_streaming_equals_whole_series() -> None:
    closes = [100.0 + ((i * 7919) % 13) - 6 for i in range(200)]
    state = IndicatorState()
    streamed = [state.update(c) for c in closes]
    assert streamed == indicators(closes)


@pytest.mark.parametrize("cut", [0, 1, 9, 14, 25, 34, 120])
def test_a_series_resumed_from_saved_state_equals_the_uninterrupted_one(cut: int) -> None:
    """What a restarted job or a backfill does: continue from the state JSON of the last row."""
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    closes = [
        (f"S{i % 2}", t0 + timedelta(minutes=i // 2), 100.0 + (i * 31) % 17) for i in range(300)
    ]
    whole = extend_series(closes, {})
    first = extend_series(closes[:cut], {})
    prior = {str(row[0]): str(row[-1]) for row in first}  # last state per symbol
    resumed = first + extend_series(closes[cut:], prior)
    assert sorted(resumed, key=lambda r: (str(r[0]), str(r[1]))) == whole


def test_state_json_round_trips_mid_warmup() -> None:
    state = IndicatorState()
    for c in (1.0, 2.0, 3.0):
        state.update(c)
    copy = IndicatorState.from_json(state.to_json())
    assert [copy.update(c) for c in range(40)] == [state.update(c) for c in range(40)]
