"""Pacing for remote APIs: Retry-After and client-side rate caps (the backoff itself is
``marketpipe.retry.Backoff``, shared by every stage)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Moved to marketpipe.retry (every stage's retry loop uses it); still importable from here.
from marketpipe.retry import Backoff

__all__ = ["Backoff", "RateLimiter", "retry_after_seconds"]


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
