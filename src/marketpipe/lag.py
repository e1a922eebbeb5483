"""Whether a stage is falling behind, from its lag sampled over time: the slowest stage of the
pipeline says so in its own log, not only as end-to-end latency somewhere downstream.

A stage is behind when its lag is at least ``min_lag`` and larger than it was ``window_s``
seconds before (it processes less than arrives). It says so once, then again at most every
``repeat_s`` while it stays behind, and once more when the lag is back under ``min_lag``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class LagTrend:
    window_s: float = 30.0
    min_lag: int = 10_000
    repeat_s: float = 60.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _behind_since: float | None = None
    _said_at: float = -float("inf")

    def observe(self, now: float, lag: int) -> str | None:
        """Record ``lag`` at time ``now`` (seconds); a line to log, or None."""
        self._samples.append((now, lag))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()
        then, before = self._samples[0]
        if self._behind_since is not None and lag < self.min_lag:
            behind_for = now - self._behind_since
            self._behind_since = None
            return f"caught up: lag {lag:,} after {behind_for:.0f} s behind"
        span = now - then
        growing = span >= self.window_s * 0.8 and lag > before
        if lag < self.min_lag or not growing:
            return None
        if self._behind_since is None:
            self._behind_since = now
        elif now - self._said_at < self.repeat_s:
            return None
        self._said_at = now
        rate = (lag - before) / span
        return (
            f"falling behind: lag {lag:,} (+{lag - before:,} in {span:.0f} s, "
            f"{rate:,.0f}/s more arriving than processed)"
        )
