"""Process plumbing shared by every service: graceful stop on signals, bounded waiting."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class DependencyUnavailable(Exception):
    """A service this command needs did not answer in time; the message says which and where."""


class Heartbeat:
    """A file whose modification time says the main loop is still turning.

    Loops ask their StopFlag whether to go on at every turn; the flag beats, at most once per
    ``every_s``. ``heartbeat_age`` reads it back: `marketpipe health`, the liveness probe.
    """

    def __init__(self, path: str | os.PathLike[str], every_s: float = 2.0) -> None:
        self.path = os.fspath(path)
        self.every_s = every_s
        self._last = -float("inf")

    def beat(self) -> None:
        """Touch the file unless it was touched less than ``every_s`` ago."""
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._touch()

    def _touch(self) -> None:
        try:
            with open(self.path, "a"):
                os.utime(self.path)
        except OSError as exc:  # a full or read-only disk must not stop the service itself
            log.warning("heartbeat %s not written: %s", self.path, exc)

    def beat_in_background(self) -> threading.Event:
        """Beat from a daemon thread until the returned event is set.

        For a service's start-up, while it waits (boundedly) for its broker, topics or
        database: alive, though its main loop has not begun. The loop's own beats take over.
        """
        done = threading.Event()

        def run() -> None:
            while not done.is_set():
                self._touch()
                done.wait(self.every_s)

        threading.Thread(target=run, name="startup-heartbeat", daemon=True).start()
        return done


def heartbeat_age(path: str | os.PathLike[str]) -> float | None:
    """Seconds since the heartbeat at ``path`` last beat, or None if it never did."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except FileNotFoundError:
        return None


READY = "ok"


class Readiness:
    """Whether a stage is doing useful work now (the readiness probe), apart from whether it is
    alive (the heartbeat): a stage waiting out an outage is alive and not ready.

    Parts of a stage (a streaming query, a consumer loop) report trouble under their own name;
    the stage is ready while none does. With a ``path`` (the heartbeat file), every change of
    ``state`` is written there whole, so ``marketpipe health --ready`` can read it; the
    heartbeat only touches the file, which keeps what it holds.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._troubles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._write()  # a restarted process must not inherit what its predecessor wrote

    @property
    def state(self) -> str:
        """``ok``, or ``who: why`` for each part in trouble, joined by ``; ``."""
        with self._lock:
            return self._describe()

    @property
    def is_ready(self) -> bool:
        with self._lock:
            return not self._troubles

    def not_ready(self, who: str, why: str) -> None:
        """``who`` is not doing useful work, because ``why`` (e.g. ``retrying: <error>``)."""
        with self._lock:
            if self._troubles.get(who) != why:
                self._troubles[who] = why
                self._write()

    def ready(self, who: str) -> None:
        """``who`` works again (a no-op when it was not in trouble)."""
        with self._lock:
            if self._troubles.pop(who, None) is not None:
                self._write()

    def _describe(self) -> str:
        return "; ".join(f"{w}: {y}" for w, y in self._troubles.items()) or READY

    def _write(self) -> None:
        if self.path is None:
            return
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as fh:
                fh.write(self._describe() + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:  # like the heartbeat: a full disk must not stop the service
            log.warning("readiness %s not written: %s", self.path, exc)


def read_readiness(path: str | os.PathLike[str]) -> str | None:
    """The state a ``Readiness`` wrote at ``path`` (``ok`` for a heartbeat file it never
    wrote), or None if there is no file."""
    try:
        with open(path) as fh:
            return fh.readline().strip() or READY
    except FileNotFoundError:
        return None


class StopFlag:
    """Set by SIGINT/SIGTERM so loops can finish their batch, flush and exit cleanly."""

    def __init__(self, heartbeat: Heartbeat | None = None) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self._heartbeat = heartbeat
        #: When a loop last asked whether to go on (the heartbeat, file or not).
        self.last_turn_unix: float | None = None

    def set(self, reason: str = "requested") -> None:
        self.signal_name = self.signal_name or reason
        self._event.set()

    def is_set(self) -> bool:
        self.last_turn_unix = time.time()
        if self._heartbeat is not None:
            self._heartbeat.beat()
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early when stopped."""
        return self._event.wait(seconds)


@contextmanager
def stop_on_signals(flag: StopFlag | None = None) -> Iterator[StopFlag]:
    """First SIGINT/SIGTERM asks for a clean stop; a second SIGINT interrupts at once."""
    flag = flag or StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("%s received: finishing the current batch, then flushing", name)
        flag.set(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def short_error(exc: BaseException) -> str:
    """An error's own words: a KafkaError's text rather than its repr, the first line only."""
    own = getattr(exc.args[0], "str", None) if exc.args else None
    text = own() if callable(own) else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.25,
    max_interval_s: float = 2.0,
    fatal: tuple[type[Exception], ...] = (),
    hint: str = "",
) -> T:
    """Call ``probe`` until it returns without raising, with capped exponential backoff.

    Raises DependencyUnavailable naming ``what``, the last error and ``hint`` (what to do)
    once ``timeout_s`` passes; errors of a ``fatal`` type (waiting cannot help) are raised at
    once. Says once, at INFO, that it waits, so a wait is never silent.
    """
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return probe()
        except fatal:
            raise
        except Exception as exc:  # any failure means "not yet"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DependencyUnavailable(
                    f"{what} did not answer within {timeout_s:g}s ({attempt} attempts): "
                    f"{short_error(exc)}" + (f"; {hint}" if hint else "")
                ) from exc
            if attempt == 1:
                log.info("waiting up to %gs for %s: %s", timeout_s, what, short_error(exc))
            log.debug("waiting for %s (attempt %d): %s", what, attempt, exc)
            time.sleep(min(interval_s, remaining))
            interval_s = min(interval_s * 2, max_interval_s)


def freeze_startup_objects() -> int:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``), for a
    long-running process whose start-up left a large heap it keeps for good: its modules,
    and in the features job Spark's and py4j's objects. A full collection walks the whole
    heap: in the features job's driver that was a pause of 0.14-0.19 s every ~15 s at 10k
    ticks/s, in the middle of a micro-batch (docs/benchmarks.md); frozen, it walks only what
    came after. Nothing frozen is freed later, so call it once, after start-up. Returns how
    many objects were frozen."""
    gc.collect()  # start-up's garbage goes first: frozen, it would stay for good
    gc.freeze()
    return gc.get_freeze_count()
