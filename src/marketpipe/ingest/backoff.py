"""Retry timing for remote APIs: exponential backoff with full jitter, Retry-After, rate caps."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class Backoff:
    """Delay before retry ``attempt`` (1-based): uniform in [0, min(cap, initial * 2**(attempt-1))].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads clients that
    failed together, so they do not hammer a recovering server in lockstep.
    """

    def __init__(
        self, initial_s: float, max_s: float, rng: Callable[[], float] = random.random
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng

    def ceiling(self, attempt: int) -> float:
        return float(min(self.max_s, self.initial_s * 2.0 ** max(0, attempt - 1)))

    def delay(self, attempt: int) -> float:
        return self._rng() * self.ceiling(attempt)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent
    or unreadable. Never negative."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RateLimiter:
    """At most ``per_second`` calls per second, spaced evenly (a client-side cap that keeps
    us under the provider's limit instead of learning it from 429s)."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.interval_s = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval_s
        if wait > 0:
            self._sleep(wait)

    def hold_off(self, seconds: float) -> None:
        """Push the next allowed call ``seconds`` into the future (after a 429)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
