"""A one-line progress bar on stderr when it is a terminal; silent otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, stream: TextIO | None = None, enabled: bool | None = None, interval_s: float = 0.2
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval_s = interval_s
        self._started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, label: str, done: int, total: int, rows: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        rate = rows / max(now - self._started, 1e-9)
        width = 24
        filled = min(width, int(width * pct / 100))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{label[-40:]:<40} [{bar}] {pct:5.1f}% {rows:>12,} rows {rate:>9,.0f}/s"
        )
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
