"""Technical indicators on a series of closed bar closes (one symbol, oldest first).

Formulas (all values are None until enough bars exist):
- ``SMA(n)_t = (c_{t-n+1} + ... + c_t) / n``.
- ``EMA(n)``: ``alpha = 2 / (n + 1)``, seeded with ``SMA(n)`` at the n-th close, then
  ``EMA_t = alpha * c_t + (1 - alpha) * EMA_{t-1}`` (the TA-Lib convention).
- Wilder's ``RSI(n)``: with changes ``d_t = c_t - c_{t-1}``, gains ``max(d, 0)`` and losses
  ``max(-d, 0)``; the first average gain and loss are the plain means of the first n changes,
  then ``avg_t = (avg_{t-1} * (n - 1) + x_t) / n``; ``RSI = 100 - 100 / (1 + gain / loss)``,
  and 100 when the average loss is 0 (50 when nothing moved at all).
- ``MACD(12, 26, 9)``: ``macd = EMA(12) - EMA(26)``; ``signal = EMA(9)`` of macd (seeded with
  the SMA of its first 9 values); ``hist = macd - signal``.

``IndicatorState`` carries everything needed to continue a series one bar at a time, so a
streaming job can update indicators as bars close without re-reading history.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Ema:
    """Incremental EMA seeded with the SMA of the first ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.alpha = 2.0 / (n + 1)
        self._seed: list[float] = []
        self.value: float | None = None

    def dump(self) -> dict[str, Any]:
        return {"seed": list(self._seed), "value": self.value}

    def load(self, data: dict[str, Any]) -> None:
        self._seed, self.value = list(data["seed"]), data["value"]

    def update(self, x: float) -> float | None:
        if self.value is None:
            self._seed.append(x)
            if len(self._seed) == self.n:
                self.value = sum(self._seed) / self.n
                self._seed.clear()
            return self.value
        self.value = self.alpha * x + (1.0 - self.alpha) * self.value
        return self.value


class WilderRsi:
    def __init__(self, n: int = 14) -> None:
        self.n = n
        self._last: float | None = None
        self._warmup: list[float] = []  # first n changes
        self._gain: float | None = None
        self._loss: float | None = None

    def dump(self) -> dict[str, Any]:
        return {"last": self._last, "warmup": self._warmup, "gain": self._gain, "loss": self._loss}

    def load(self, data: dict[str, Any]) -> None:
        self._last, self._warmup = data["last"], list(data["warmup"])
        self._gain, self._loss = data["gain"], data["loss"]

    def update(self, close: float) -> float | None:
        last, self._last = self._last, close
        if last is None:
            return None
        change = close - last
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if self._gain is None or self._loss is None:
            self._warmup.append(change)
            if len(self._warmup) < self.n:
                return None
            self._gain = sum(max(c, 0.0) for c in self._warmup) / self.n
            self._loss = sum(max(-c, 0.0) for c in self._warmup) / self.n
            self._warmup.clear()
        else:
            self._gain = (self._gain * (self.n - 1) + gain) / self.n
            self._loss = (self._loss * (self.n - 1) + loss) / self.n
        if self._loss == 0.0:
            return 50.0 if self._gain == 0.0 else 100.0
        return 100.0 - 100.0 / (1.0 + self._gain / self._loss)


@dataclass(frozen=True)
class IndicatorRow:
    close: float
    sma: float | None
    ema: float | None
    rsi: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None


@dataclass
class IndicatorState:
    """Everything needed to extend one symbol's indicators by one closed bar."""

    sma_n: int = 20
    ema_n: int = 20
    rsi_n: int = 14
    fast: int = 12
    slow: int = 26
    signal_n: int = 9
    _window: deque[float] = field(init=False)
    _ema: Ema = field(init=False)
    _rsi: WilderRsi = field(init=False)
    _fast: Ema = field(init=False)
    _slow: Ema = field(init=False)
    _signal: Ema = field(init=False)

    def __post_init__(self) -> None:
        self._window = deque(maxlen=self.sma_n)
        self._ema = Ema(self.ema_n)
        self._rsi = WilderRsi(self.rsi_n)
        self._fast, self._slow, self._signal = Ema(self.fast), Ema(self.slow), Ema(self.signal_n)

    def to_json(self) -> str:
        """Everything needed to continue the series, as JSON (stored with each indicators row,
        so a restarted job or a backfill picks the series up where it stood)."""
        return json.dumps(
            {
                "params": [self.sma_n, self.ema_n, self.rsi_n, self.fast, self.slow, self.signal_n],
                "window": list(self._window),
                "ema": self._ema.dump(),
                "rsi": self._rsi.dump(),
                "fast": self._fast.dump(),
                "slow": self._slow.dump(),
                "signal": self._signal.dump(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> IndicatorState:
        data = json.loads(text)
        state = cls(*data["params"])
        state._window.extend(data["window"])
        for name in ("ema", "rsi", "fast", "slow", "signal"):
            getattr(state, f"_{name}").load(data[name])
        return state

    def update(self, close: float) -> IndicatorRow:
        self._window.append(close)
        sma = sum(self._window) / self.sma_n if len(self._window) == self.sma_n else None
        fast, slow = self._fast.update(close), self._slow.update(close)
        macd = fast - slow if fast is not None and slow is not None else None
        signal = self._signal.update(macd) if macd is not None else None
        return IndicatorRow(
            close=close,
            sma=sma,
            ema=self._ema.update(close),
            rsi=self._rsi.update(close),
            macd=macd,
            macd_signal=signal,
            macd_hist=macd - signal if macd is not None and signal is not None else None,
        )


def indicators(closes: Iterable[float], **params: int) -> list[IndicatorRow]:
    """Indicators for a whole series (a backfill, or a test)."""
    state = IndicatorState(**params)
    return [state.update(c) for c in closes]


def extend_series(
    closes: Iterable[tuple[str, datetime, float]], prior: Mapping[str, str]
) -> list[tuple[object, ...]]:
    """Indicator rows for closed bars ``(symbol, window_start, close)``, continuing each symbol
    from ``prior[symbol]`` (the state JSON of its last row before these bars; a fresh series
    when absent). Rows come out in ``INDICATORS.columns`` order without ``written_at``:
    ``(symbol, window_start, close, sma, ema, rsi, macd, signal, hist, state)``."""
    states: dict[str, IndicatorState] = {}
    out: list[tuple[object, ...]] = []
    for symbol, start, close in sorted(closes, key=lambda bar: (bar[0], bar[1])):
        state = states.get(symbol)
        if state is None:
            saved = prior.get(symbol)
            state = states[symbol] = IndicatorState.from_json(saved) if saved else IndicatorState()
        row = state.update(close)
        out.append(
            (symbol, start, close, row.sma, row.ema, row.rsi, row.macd, row.macd_signal,
             row.macd_hist, state.to_json())
        )  # fmt: skip
    return out
