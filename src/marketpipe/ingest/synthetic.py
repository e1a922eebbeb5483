"""Synthetic trades with their prevailing quote, per-symbol geometric Brownian motion.

Model, per symbol:
- a latent mid price follows GBM: ``ln S(t+dt) = ln S(t) + (mu - sigma^2/2) dt + sigma sqrt(dt) Z``
  with ``dt`` the real time since that symbol's previous tick, in 365-day years;
- the quote straddles the mid on the tick grid: ``spread = max(1 tick, mid * spread_bps)`` rounded
  to ticks, ``bid = floor(mid/tick - spread/2) * tick``, ``ask = bid + spread``;
- each trade is buyer- or seller-initiated with equal odds and prints at the ask or the bid;
- trade and quote sizes are log-normal, rounded to whole lots (at least one lot);
- ``seq`` counts up from 1 per symbol.

Generation is vectorised with numpy over whole batches: all maths for a batch is a handful of array
operations, so the producer's cost per tick is dominated by JSON encoding and the Kafka client.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from marketpipe.settings import ProducerSettings

SECONDS_PER_YEAR = 365.0 * 24 * 3600
US_PER_YEAR = SECONDS_PER_YEAR * 1e6

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    start_price: float
    drift: float
    volatility: float
    tick_size: float
    spread_bps: float
    lot_size: float
    mean_trade_size: float


def specs_from_settings(cfg: ProducerSettings) -> list[SymbolSpec]:
    return [
        SymbolSpec(
            name=name,
            start_price=start_price,
            drift=cfg.drift,
            volatility=cfg.volatility,
            tick_size=cfg.tick_size,
            spread_bps=cfg.spread_bps,
            lot_size=cfg.lot_size,
            mean_trade_size=cfg.mean_trade_size,
        )
        for name, start_price in cfg.start_prices().items()
    ]


def decimals_of(step: float) -> int:
    """Decimal places needed to print multiples of ``step`` exactly (0.01 -> 2, 0.25 -> 2)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass
class TickBatch:
    """A batch of ticks as columns, in emission order. ``mid`` is the latent (unrounded) price."""

    symbol_index: IntArray
    event_time: IntArray
    seq: IntArray
    price: FloatArray
    size: FloatArray
    bid: FloatArray
    ask: FloatArray
    bid_size: FloatArray
    ask_size: FloatArray
    mid: FloatArray

    def __len__(self) -> int:
        return len(self.event_time)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a symbol's series stood in the topic: its newest seq, with that tick's price."""

    seq: int
    price: float
    event_time: int


class SyntheticMarket:
    """Deterministic for a given seed and sequence of event times."""

    def __init__(self, specs: list[SymbolSpec], seed: int | None = None) -> None:
        if not specs:
            raise ValueError("at least one symbol is needed")
        self.specs = specs
        self.names = [s.name for s in specs]
        self.rng = np.random.default_rng(seed)
        n = len(specs)
        self._mu = np.array([s.drift for s in specs])
        self._sigma = np.array([s.volatility for s in specs])
        self._tick = np.array([s.tick_size for s in specs])
        self._spread_frac = np.array([s.spread_bps / 1e4 for s in specs])
        self._lot = np.array([s.lot_size for s in specs])
        self._log_trade_lots = np.log(np.array([s.mean_trade_size / s.lot_size for s in specs]))
        self._price_decimals = np.array([decimals_of(s.tick_size) for s in specs])
        self._log_mid = np.log(np.array([s.start_price for s in specs]))
        self._last_time = np.full(n, -1, dtype=np.int64)
        self._last_seq = np.zeros(n, dtype=np.int64)

    @property
    def last_seq(self) -> dict[str, int]:
        return dict(zip(self.names, self._last_seq.tolist(), strict=True))

    def resume(self, last: dict[str, ResumePoint]) -> int:
        """Continue symbols from their last published tick (seq, price, event time), so a
        restarted producer neither repeats sequence numbers nor jumps in price. Returns how
        many symbols resumed."""
        resumed = 0
        for i, name in enumerate(self.names):
            point = last.get(name)
            if point is None:
                continue
            self._last_seq[i] = point.seq
            self._log_mid[i] = np.log(point.price)
            self._last_time[i] = point.event_time
            resumed += 1
        return resumed

    def generate(self, event_time_us: IntArray, symbol_index: IntArray | None = None) -> TickBatch:
        """Next ticks at the given event times (ascending); symbols drawn uniformly if not given."""
        n = len(event_time_us)
        times = np.asarray(event_time_us, dtype=np.int64)
        rng = self.rng
        if symbol_index is None:
            symbol_index = rng.integers(0, len(self.specs), n, dtype=np.int64)
        sym = np.asarray(symbol_index, dtype=np.int64)

        # Work symbol by symbol in one pass: a stable sort groups each symbol's ticks in time order.
        order = np.argsort(sym, kind="stable")
        s_sorted = sym[order]
        t_sorted = times[order]
        starts = np.ones(n, dtype=bool)
        starts[1:] = s_sorted[1:] != s_sorted[:-1]
        start_idx = np.flatnonzero(starts)
        seg_len = np.diff(np.append(start_idx, n))
        seg_of = np.repeat(np.arange(len(start_idx)), seg_len)
        seg_sym = s_sorted[start_idx]

        prev = np.empty(n, dtype=np.int64)
        prev[1:] = t_sorted[:-1]
        first_seen = self._last_time[seg_sym]
        prev[start_idx] = np.where(first_seen < 0, t_sorted[start_idx], first_seen)
        dt = np.maximum(t_sorted - prev, 0).astype(np.float64) / US_PER_YEAR

        mu, sigma = self._mu[s_sorted], self._sigma[s_sorted]
        inc = (mu - 0.5 * sigma * sigma) * dt + sigma * np.sqrt(dt) * rng.standard_normal(n)
        csum = np.cumsum(inc)
        seg_base = (csum[start_idx] - inc[start_idx])[seg_of]
        log_mid = self._log_mid[s_sorted] + (csum - seg_base)
        position = np.arange(n) - start_idx[seg_of]
        seq = self._last_seq[s_sorted] + position + 1

        ends = start_idx + seg_len - 1
        self._log_mid[seg_sym] = log_mid[ends]
        self._last_time[seg_sym] = t_sorted[ends]
        self._last_seq[seg_sym] = seq[ends]

        # Back to emission order.
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        log_mid, seq = log_mid[inverse], seq[inverse]

        mid = np.exp(log_mid)
        tick = self._tick[sym]
        spread_ticks = np.maximum(1.0, np.rint(mid * self._spread_frac[sym] / tick))
        bid_ticks = np.floor(mid / tick - spread_ticks / 2.0)
        bid_ticks = np.maximum(bid_ticks, 1.0)  # a price never reaches zero
        ask_ticks = bid_ticks + spread_ticks
        buy = rng.random(n) < 0.5
        lot = self._lot[sym]
        log_lots = self._log_trade_lots[sym]
        size = lot * np.maximum(1.0, np.rint(rng.lognormal(log_lots - 0.5, 1.0)))
        bid_size = lot * np.maximum(1.0, np.rint(rng.lognormal(log_lots + 1.0, 0.8)))
        ask_size = lot * np.maximum(1.0, np.rint(rng.lognormal(log_lots + 1.0, 0.8)))

        bid = _round_to(bid_ticks * tick, self._price_decimals[sym])
        ask = _round_to(ask_ticks * tick, self._price_decimals[sym])
        return TickBatch(
            symbol_index=sym,
            event_time=times,
            seq=seq,
            price=np.where(buy, ask, bid),
            size=size,
            bid=bid,
            ask=ask,
            bid_size=bid_size,
            ask_size=ask_size,
            mid=mid,
        )


def _round_to(values: FloatArray, decimals: IntArray) -> FloatArray:
    """Round each value to its own number of decimals (one np.round per distinct precision)."""
    unique = np.unique(decimals)
    if len(unique) == 1:
        return np.round(values, int(unique[0]))
    out = np.empty_like(values)
    for d in unique:
        mask = decimals == d
        out[mask] = np.round(values[mask], int(d))
    return out
