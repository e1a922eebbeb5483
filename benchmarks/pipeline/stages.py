"""A pipeline stage as a supervised process: what a pod with ``restartPolicy: OnFailure`` is.

The stage runs ``marketpipe <command>`` in a session of its own (so a kill takes the JVM and
Python workers with it, as when a pod dies). When a run exits non-zero and the stage is not
being stopped, the supervisor starts it again after ``restart_delay_s``, up to
``max_restarts`` times: so a test sees both what a stage does by itself (exit codes, whether
it healed in-process) and what a cluster's restart policy would add (restarts counted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The arguments of run ``n`` (0 is the first): a restarted run may resume where one stopped.
Argv = Callable[[int], list[str]]


@dataclass
class Run:
    """One process of a stage, from start to exit."""

    number: int
    pid: int
    started: float  # time.monotonic()
    out: Path
    err: Path
    ended: float | None = None
    exit_code: int | None = None
    killed_by: str | None = None  # the signal the harness sent, if it ended it

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


class Stage:
    def __init__(
        self,
        name: str,
        argv: Argv,
        env: Mapping[str, str],
        folder: Path,
        restart_delay_s: float = 2.0,
        max_restarts: int = 5,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.folder = folder
        self.restart_delay_s = restart_delay_s
        self.max_restarts = max_restarts
        self.runs: list[Run] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"stage-{name}", daemon=True)

    # -- state ---------------------------------------------------------------------------------
    @property
    def restarts(self) -> int:
        return max(0, len(self.runs) - 1)

    @property
    def exit_codes(self) -> list[int | None]:
        return [r.exit_code for r in self.runs]

    @property
    def current(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    @property
    def done(self) -> bool:
        """No run is going on and none will be started."""
        return self._done.is_set()

    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def describe(self) -> str:
        codes = ", ".join(
            f"{c}" + (f" ({r.killed_by} by the harness)" if r.killed_by else "")
            for r, c in zip(self.runs, self.exit_codes, strict=True)
        )
        return f"{self.name}: {len(self.runs)} runs, {self.restarts} restarts, exit codes [{codes}]"

    def tail(self, chars: int = 3000) -> str:
        run = self.current
        if run is None:
            return f"{self.name}: never started"
        return f"--- {self.name} run {run.number} stderr:\n{run.stderr()[-chars:]}"

    # -- control -------------------------------------------------------------------------------
    def start(self) -> Stage:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        n = len(self.runs)
        out = self.folder / f"{self.name}.{n}.out"
        err = self.folder / f"{self.name}.{n}.err"
        argv = [sys.executable, "-m", "marketpipe", *self.argv(n)]
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                start_new_session=True,
            )  # fmt: skip
        with self._lock:
            self._proc = proc
            self.runs.append(Run(n, proc.pid, time.monotonic(), out, err))
        log.info("%s: run %d started (pid %d): %s", self.name, n, proc.pid, " ".join(argv[3:]))

    def _supervise(self) -> None:
        try:
            while True:
                proc, run = self._proc, self.runs[-1]
                assert proc is not None
                code = proc.wait()
                run.ended, run.exit_code = time.monotonic(), code
                log.info("%s: run %d exited %d", self.name, run.number, code)
                if code == 0 or self._stopping.is_set() or self.restarts >= self.max_restarts:
                    return
                if self._stopping.wait(self.restart_delay_s):
                    return
                self._spawn()
        finally:
            self._done.set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL goes to the run's whole process group (driver, JVM and Python workers die at
        once, as a pod does); any other signal to the main process only, as Kubernetes sends
        SIGTERM to a container's main process. The restart policy then applies."""
        with self._lock:
            proc, run = self._proc, self.current
            if proc is None or run is None or proc.poll() is not None:
                raise RuntimeError(f"{self.name} is not running")
            run.killed_by = signal.Signals(sig).name
            (os.killpg if sig == signal.SIGKILL else os.kill)(proc.pid, sig)

    def wait(self, timeout_s: float) -> bool:
        """Until the stage ends for good (exit 0, or out of restarts); False on timeout."""
        return self._done.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM to the main process, as Kubernetes stops a pod; SIGKILL to the group after
        ``timeout_s`` (noted on the run). Returns the last run's exit code."""
        self._stopping.set()
        with self._lock:
            proc, run = self._proc, self.current
        if proc is not None and run is not None and proc.poll() is None:
            run.killed_by = "SIGTERM"
            proc.send_signal(signal.SIGTERM)  # the main process only: it stops its children
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs: SIGKILL", self.name, timeout_s)
                run.killed_by = "SIGKILL after an ignored SIGTERM"
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the run left behind
        if self._thread.is_alive():
            self._thread.join(10)
        return self.runs[-1].exit_code if self.runs else None
