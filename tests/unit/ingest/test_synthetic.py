from __future__ import annotations

import numpy as np
import pytest

from marketpipe.ingest.synthetic import (
    US_PER_YEAR,
    SymbolSpec,
    SyntheticMarket,
    decimals_of,
    specs_from_settings,
)
from marketpipe.settings import ProducerSettings


def spec(name: str = "X", **kw: float) -> SymbolSpec:
    base = {
        "start_price": 100.0,
        "drift": 0.05,
        "volatility": 0.4,
        "tick_size": 0.01,
        "spread_bps": 2.0,
        "lot_size": 1.0,
        "mean_trade_size": 100.0,
    }
    base.update(kw)
    return SymbolSpec(name=name, **base)  # type: ignore[arg-type]


def test_gbm_log_returns_have_the_model_mean_and_sd() -> None:
    drift, vol, step_us = 0.8, 0.6, 60_000_000  # one tick a minute, one symbol
    market = SyntheticMarket([spec(drift=drift, volatility=vol)], seed=42)
    n = 200_000
    times = 1_700_000_000_000_000 + np.arange(n, dtype=np.int64) * step_us
    mids = np.concatenate(
        [
            market.generate(times[i : i + 5000], np.zeros(5000, dtype=np.int64)).mid
            for i in range(0, n, 5000)
        ]
    )
    returns = np.diff(np.log(mids))
    dt = step_us / US_PER_YEAR
    expected_mean = (drift - 0.5 * vol**2) * dt
    expected_sd = vol * np.sqrt(dt)
    sd_of_mean = expected_sd / np.sqrt(len(returns))
    assert abs(returns.mean() - expected_mean) < 4 * sd_of_mean
    assert returns.std(ddof=1) == pytest.approx(expected_sd, rel=0.01)


def test_gbm_uses_each_symbols_own_elapsed_time() -> None:
    """Two symbols interleaved: each one's returns scale with its own time between ticks."""
    market = SyntheticMarket([spec("A"), spec("B", volatility=0.1)], seed=1)
    n = 100_000
    times = np.arange(n, dtype=np.int64) * 1_000_000
    sym = np.arange(n, dtype=np.int64) % 2  # each symbol ticks every 2 s
    batch = market.generate(times, sym)
    for s, vol in ((0, 0.4), (1, 0.1)):
        r = np.diff(np.log(batch.mid[sym == s]))
        assert r.std(ddof=1) == pytest.approx(vol * np.sqrt(2e6 / US_PER_YEAR), rel=0.02)


def test_same_seed_same_ticks_different_seed_different_ticks() -> None:
    times = np.arange(1000, dtype=np.int64) * 1000
    specs = specs_from_settings(ProducerSettings(symbol_count=5))
    a = SyntheticMarket(specs, seed=3).generate(times)
    b = SyntheticMarket(specs, seed=3).generate(times)
    c = SyntheticMarket(specs, seed=4).generate(times)
    assert np.array_equal(a.price, b.price)
    assert np.array_equal(a.symbol_index, b.symbol_index)
    assert not np.array_equal(a.price, c.price)


def test_quotes_are_on_the_grid_and_trades_print_at_the_touch() -> None:
    market = SyntheticMarket([spec(tick_size=0.25, start_price=50.0, volatility=2.0)], seed=9)
    batch = market.generate(np.arange(20_000, dtype=np.int64) * 10_000_000)
    assert (batch.bid < batch.ask).all()
    assert np.allclose(np.round(batch.bid / 0.25), batch.bid / 0.25)
    assert np.allclose(np.round(batch.ask / 0.25), batch.ask / 0.25)
    assert ((batch.price == batch.bid) | (batch.price == batch.ask)).all()
    assert (batch.size >= 1).all()
    assert (batch.bid_size >= 1).all()
    assert (batch.ask_size >= 1).all()
    # The quote straddles the latent mid.
    assert (batch.bid <= batch.mid + 0.25).all()
    assert (batch.ask >= batch.mid - 0.25).all()


def test_spread_follows_spread_bps() -> None:
    market = SyntheticMarket([spec(start_price=1000.0, spread_bps=10.0, volatility=0.0)], seed=0)
    batch = market.generate(np.arange(100, dtype=np.int64))
    assert np.allclose(batch.ask - batch.bid, 1.0)  # 10 bps of 1000 = 1.00 = 100 ticks


def test_sizes_are_whole_lots() -> None:
    market = SyntheticMarket([spec(lot_size=0.001, mean_trade_size=0.05)], seed=5)
    batch = market.generate(np.arange(5000, dtype=np.int64))
    lots = batch.size / 0.001
    assert np.allclose(lots, np.round(lots))
    assert batch.size.mean() == pytest.approx(0.05, rel=0.2)


def test_seq_counts_up_per_symbol_across_batches() -> None:
    specs = specs_from_settings(ProducerSettings(symbol_count=7))
    market = SyntheticMarket(specs, seed=11)
    seen: dict[int, list[int]] = {i: [] for i in range(7)}
    for start in range(0, 30_000, 3000):
        batch = market.generate(np.arange(start, start + 3000, dtype=np.int64))
        for s, q in zip(batch.symbol_index.tolist(), batch.seq.tolist(), strict=True):
            seen[s].append(q)
    for seqs in seen.values():
        assert seqs == list(range(1, len(seqs) + 1))
    assert sum(market.last_seq.values()) == 30_000


@pytest.mark.parametrize(
    ("step", "decimals"), [(0.01, 2), (0.25, 2), (1.0, 0), (0.0001, 4), (5.0, 0)]
)
def test_decimals_of(step: float, decimals: int) -> None:
    assert decimals_of(step) == decimals


def test_prices_print_without_float_noise() -> None:
    market = SyntheticMarket([spec(tick_size=0.01)], seed=2)
    batch = market.generate(np.arange(1000, dtype=np.int64) * 1_000_000)
    assert all(len(repr(p).split(".")[-1]) <= 2 for p in batch.price.tolist())
