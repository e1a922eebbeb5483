"""Retrying what fails for a while: exponential backoff with full jitter, and one loop that
retries transient failures until a give-up time, logging each retry and telling readiness.

Every stage heals the same way (Flink and Kafka Connect do it so): a transient failure (a
server restarting, a connection refused) is retried with bounded exponential backoff; a
permanent one (bad SQL, a missing table, wrong credentials) is raised at once, since waiting
cannot fix it; after ``give_up_s`` of failing, ``GaveUp`` says in one line what failed and for
how long, and the stage exits so that a human (or Kubernetes) sees it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from marketpipe.runtime import Readiness

log = logging.getLogger(__name__)

T = TypeVar("T")


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


class GaveUp(Exception):
    """Retrying did not help within the give-up time. The message is one line: who retried,
    for how long, how often, and the last error."""


class Abandoned(Exception):
    """Retrying stopped because the process is stopping (nothing was given up on)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, or its type's name."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()),
                type(exc).__name__)  # fmt: skip


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def retry(
    call: Callable[[], T],
    transient: Callable[[Exception], bool],
    backoff: Backoff,
    give_up_s: float,
    who: str,
    readiness: Readiness | None = None,
    wait: Callable[[float], bool] = _sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, called again after each ``transient`` failure with ``backoff``'s delays.

    Each retry logs one WARNING line: ``who``, the error's first line (name its source and
    endpoint in the exception), the attempt and the next delay. While failing, ``readiness``
    has ``who`` not ready ("retrying: ..."); a success makes it ready again. Raises a
    permanent failure at once, ``GaveUp`` once the failures have lasted ``give_up_s`` (the last
    attempt falls on that moment), and ``Abandoned`` when ``wait(delay)`` returns True (the
    process is stopping: pass its stop event's ``wait``).
    """
    attempt = 0
    first_failure: float | None = None
    while True:
        try:
            result = call()
        except Exception as exc:
            why = first_line(exc)
            if not transient(exc):
                if readiness is not None:
                    readiness.not_ready(who, f"failed: {why}")
                raise
            attempt += 1
            now = clock()
            first_failure = now if first_failure is None else first_failure
            failing_s = now - first_failure
            if failing_s >= give_up_s:
                gave_up = (
                    f"gave up after {failing_s:.0f} s of retrying ({attempt} attempts, "
                    f"limit {give_up_s:g} s): {why}"
                )
                if readiness is not None:
                    readiness.not_ready(who, gave_up)
                raise GaveUp(f"{who}: {gave_up}") from exc
            delay = min(backoff.delay(attempt), give_up_s - failing_s)
            log.warning(
                "%s: %s; retry %d in %.1f s (failing for %.0f s, giving up after %g s)",
                who, why, attempt, delay, failing_s, give_up_s,
            )  # fmt: skip
            if readiness is not None:
                readiness.not_ready(who, f"retrying: {why}")
            if wait(delay):
                raise Abandoned(f"{who}: stopped while retrying: {why}") from exc
            continue
        if attempt:
            log.info("%s: recovered after %d retries", who, attempt)
        if readiness is not None:
            readiness.ready(who)
        return result
