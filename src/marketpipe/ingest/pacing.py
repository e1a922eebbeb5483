"""When ticks happen: a rate-controlled schedule with jitter, or as fast as possible.

Ticks are planned on an even grid of ``1/tps`` seconds; each planned time is moved by a uniform
offset in ``[-jitter/2, +jitter/2]``, and a tick is released once its (jittered) time has come, so
inter-arrival times vary while the long-run rate stays exact and event times never lie in the
future. The schedule is absolute: a slow batch is caught up on, never silently dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from marketpipe.ingest.synthetic import IntArray

#: How often a live schedule hands out the ticks that are due: about the producer's linger.ms,
#: so batching them adds no latency the client's own batching would not.
RELEASE_EVERY_US = 5_000.0


def wall_clock_us() -> int:
    return time.time_ns() // 1_000


class Pacer:
    """Hands out the event times (epoch microseconds) of the ticks that are due."""

    def __init__(
        self,
        tps: float,
        jitter_ms: float = 0.0,
        max_batch: int = 4096,
        rng: np.random.Generator | None = None,
        clock_us: Callable[[], int] = wall_clock_us,
        sleep: Callable[[float], object] = time.sleep,
        start_us: int | None = None,
        every_us: float = RELEASE_EVERY_US,
    ) -> None:
        """``start_us`` (default: now) is the first slot; a start in the past releases the
        slots up to now at once (a backlog with realistic event times). Due ticks are handed
        out at most once per ``every_us``: each release costs a generate-encode-publish round
        whatever its size, and one per tick kept a core busy at 10k ticks/s (measured: 107%
        CPU, 5 ms batches: see docs/benchmarks.md). Their event times stay as planned."""
        if tps < 0 or not math.isfinite(tps):
            raise ValueError("tps must be a finite number >= 0")
        self.tps = tps
        self.max_batch = max_batch
        self._clock = clock_us
        self._sleep = sleep
        self._rng = rng or np.random.default_rng()
        self._jitter_us = jitter_ms * 1000.0
        self._interval_us = 1e6 / tps if tps else 0.0
        self._planned = 0  # grid slots generated so far
        self._start = float(clock_us() if start_us is None else start_us)
        self._pending: IntArray = np.empty(0, dtype=np.int64)
        self._every_us = every_us
        self._released = -math.inf  # when next_times last handed ticks out

    def behind_us(self) -> int:
        """How far the oldest undelivered planned tick lies in the past (0 when on time)."""
        if not len(self._pending):
            return 0
        return max(0, self._clock() - int(self._pending[0]))

    def next_times(self, limit: int | None = None) -> IntArray:
        """Block until at least one tick is due; return up to ``limit`` due event times, sorted."""
        cap = min(limit or self.max_batch, self.max_batch)
        if not self.tps:
            return np.full(cap, self._clock(), dtype=np.int64)
        while True:
            now = self._clock()
            self._plan_until(now + self._jitter_us / 2.0)
            due = int(np.searchsorted(self._pending, now, side="right"))
            if due and (due >= cap or now >= self._released + self._every_us):
                take = min(due, cap)
                out, self._pending = self._pending[:take], self._pending[take:]
                self._released = now
                return out
            if due:
                wait_us = self._released + self._every_us - now
            else:
                wait_us = int(self._pending[0]) - now if len(self._pending) else self._interval_us
                wait_us = max(wait_us, self._released + self._every_us - now)
            self._sleep(min(max(wait_us, 50.0), 50_000.0) / 1e6)

    def _plan_until(self, horizon_us: float) -> None:
        """Extend the grid so every slot whose jittered time could be <= horizon is planned."""
        last_slot = math.floor(
            (horizon_us + self._jitter_us / 2.0 - self._start) / self._interval_us
        )
        count = last_slot + 1 - self._planned
        if count <= 0:
            return
        count = min(count, self.max_batch * 16)  # bound memory when far behind
        slots = self._start + (self._planned + np.arange(count)) * self._interval_us
        self._planned += count
        if self._jitter_us:
            slots = slots + self._rng.uniform(-self._jitter_us / 2, self._jitter_us / 2, count)
        merged = np.concatenate([self._pending, np.rint(slots).astype(np.int64)])
        merged.sort(kind="stable")
        self._pending = merged


class HistoryThenLive:
    """A generated history, then the live schedule: the ``count`` slots of ``history`` (a
    Pacer started in the past, so they are all due at once and go out as fast as the broker
    takes them), then ``live``'s. Behind-schedule counts only from the live part on."""

    def __init__(self, history: Pacer, count: int, live: Pacer) -> None:
        self.history = history
        self.live = live
        self._left = count

    @property
    def in_history(self) -> bool:
        return self._left > 0

    def behind_us(self) -> int:
        return 0 if self._left else self.live.behind_us()

    def next_times(self, limit: int | None = None) -> IntArray:
        if self._left <= 0:
            return self.live.next_times(limit)
        out = self.history.next_times(min(limit or self._left, self._left))
        self._left -= len(out)
        return out


def schedule(
    tps: float,
    jitter_ms: float,
    max_batch: int,
    rng: np.random.Generator,
    history_s: float = 0.0,
    history_tps: float | None = None,
    clock_us: Callable[[], int] = wall_clock_us,
    sleep: Callable[[float], object] = time.sleep,
) -> Pacer | HistoryThenLive:
    """The producer's schedule: live at ``tps`` from now, after ``history_s`` seconds of
    generated history at ``history_tps`` (default ``tps``) when asked for."""
    live = Pacer(tps, jitter_ms, max_batch, rng=rng, clock_us=clock_us, sleep=sleep)
    if not history_s:
        return live
    rate = history_tps or tps
    if not rate:
        raise ValueError("a generated history needs a rate: set history_tps (or tps) above 0")
    now = clock_us()
    history = Pacer(
        rate, jitter_ms, max_batch, rng=rng, clock_us=clock_us, sleep=sleep,
        start_us=now - int(history_s * 1e6),
    )  # fmt: skip
    live = Pacer(tps, jitter_ms, max_batch, rng=rng, clock_us=clock_us, sleep=sleep, start_us=now)
    return HistoryThenLive(history, math.floor(history_s * rate), live)
