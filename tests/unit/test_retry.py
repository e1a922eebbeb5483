"""The one retry loop every stage heals with: backoff, transient versus permanent, give-up,
stopping, and what readiness sees meanwhile."""

from __future__ import annotations

import logging

import pytest

from marketpipe.retry import Abandoned, Backoff, GaveUp, first_line, retry
from marketpipe.runtime import Readiness


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    b = Backoff(0.5, 8.0, rng=lambda: 1.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_backoff_is_fully_jittered() -> None:
    draws = iter([0.0, 0.5, 0.25])
    b = Backoff(1.0, 100.0, rng=lambda: next(draws))
    assert [b.delay(3), b.delay(3), b.delay(3)] == [0.0, 2.0, 1.0]


class Clock:
    """Time that moves only when the retry loop waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class Outage:
    """Fails with ``error`` for the first ``failures`` calls, then answers 42."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionRefusedError("connection refused\n\tIs it running?")
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def transient(exc: Exception) -> bool:
    return isinstance(exc, ConnectionError)


def test_transient_failures_are_retried_with_growing_delays_and_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, call = Clock(), Outage(failures=4)
    with caplog.at_level(logging.WARNING, logger="marketpipe.retry"):
        got = retry(call, transient, Backoff(1.0, 3.0, rng=lambda: 1.0), 60.0, "query features",
                    wait=clock.wait, clock=clock)  # fmt: skip
    assert got == 42
    assert call.calls == 5
    assert clock.waits == [1.0, 2.0, 3.0, 3.0]  # capped at max
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0] == (
        "query features: connection refused; retry 1 in 1.0 s (failing for 0 s, giving up after "
        "60 s)"
    )
    assert lines[3].startswith(
        "query features: connection refused; retry 4 in 3.0 s (failing for 6 s"
    )


def test_a_permanent_failure_is_raised_at_once() -> None:
    clock = Clock()
    call = Outage(failures=3, error=ValueError('relation "bars" does not exist'))
    with pytest.raises(ValueError, match="bars"):
        retry(call, transient, Backoff(1.0, 3.0), 60.0, "q", wait=clock.wait, clock=clock)
    assert call.calls == 1
    assert clock.waits == []


def test_gives_up_after_the_give_up_time_with_one_line_and_a_last_attempt_at_the_limit() -> None:
    clock, call = Clock(), Outage(failures=1000)
    with pytest.raises(GaveUp) as gave_up:
        retry(call, transient, Backoff(1.0, 4.0, rng=lambda: 1.0), 10.0, "query archive",
              wait=clock.wait, clock=clock)  # fmt: skip
    # Delays 1, 2, 4, then only the 3 s left: the last attempt falls on the limit.
    assert clock.waits == [1.0, 2.0, 4.0, 3.0]
    assert call.calls == 5
    message = str(gave_up.value)
    assert "\n" not in message
    assert message == (
        "query archive: gave up after 10 s of retrying (5 attempts, limit 10 s): connection refused"
    )
    assert isinstance(gave_up.value.__cause__, ConnectionRefusedError)


def test_an_outage_shorter_than_the_give_up_time_is_waited_out() -> None:
    clock, call = Clock(), Outage(failures=6)
    assert retry(call, transient, Backoff(0.5, 30.0, rng=lambda: 1.0), 300.0, "q",
                 wait=clock.wait, clock=clock) == 42  # fmt: skip
    assert sum(clock.waits) == 0.5 + 1 + 2 + 4 + 8 + 16


def test_stopping_while_waiting_abandons_the_retry() -> None:
    call = Outage(failures=1000)
    with pytest.raises(Abandoned, match="q: stopped while retrying: connection refused"):
        retry(call, transient, Backoff(1.0, 4.0), 60.0, "q", wait=lambda _s: True)
    assert call.calls == 1


def test_readiness_says_retrying_while_failing_and_ok_once_it_works() -> None:
    readiness = Readiness()
    seen: list[str] = []

    def wait(_seconds: float) -> bool:
        seen.append(readiness.state)
        return False

    readiness.not_ready("query archive", "retrying: s3 down")  # another part, still failing
    assert retry(Outage(failures=2), transient, Backoff(0.01, 0.01), 60.0, "query features",
                 readiness=readiness, wait=wait) == 42  # fmt: skip
    assert (
        seen
        == ["query archive: retrying: s3 down; query features: retrying: connection refused"] * 2
    )
    assert readiness.state == "query archive: retrying: s3 down"
    readiness.ready("query archive")
    assert readiness.state == "ok"


def test_readiness_after_a_permanent_failure_or_giving_up_is_not_ready() -> None:
    readiness = Readiness()
    with pytest.raises(ValueError, match="bad"):
        retry(Outage(1, ValueError("bad")), transient, Backoff(1, 1), 5, "q", readiness=readiness)
    assert readiness.state == "q: failed: bad"
    clock = Clock()
    with pytest.raises(GaveUp):
        retry(Outage(100), transient, Backoff(1, 1), 2, "q", readiness=readiness,
              wait=clock.wait, clock=clock)  # fmt: skip
    assert readiness.state.startswith("q: gave up after 2 s of retrying")


def test_first_line_skips_blank_lines_and_names_a_silent_error() -> None:
    assert first_line(ValueError("\n  first \nsecond")) == "first"
    assert first_line(TimeoutError()) == "TimeoutError"
