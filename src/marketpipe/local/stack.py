"""``marketpipe local up|status|down``: the local stack of real services, as processes.

State lives in ``<data_dir>``: ``state.json`` (pids and ports), ``secrets.json`` (generated
credentials, mode 0600), one folder per service, and ``endpoints.env`` which ``load_settings``
reads so every other command finds the services. ``up`` is idempotent: healthy services are left
alone, dead ones restarted on their previous ports when free. The pytest fixtures use this class.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from marketpipe.local.process import PORT_TAKEN, ServiceError, terminate
from marketpipe.local.services import SERVICES, Secrets, Service, State
from marketpipe.settings import ENDPOINTS_FILE, Settings

log = logging.getLogger(__name__)

PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    detail: str
    pid: int | None


class LocalStack:
    def __init__(self, settings: Settings, services: list[str] | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.local.data_dir.resolve()
        self.names = list(services or settings.local.services)
        unknown = [n for n in self.names if n not in SERVICES]
        if unknown:
            raise ServiceError(f"unknown local services {unknown}; choose from {sorted(SERVICES)}")

    # -- files ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def endpoints_path(self) -> Path:
        return self.data_dir / ENDPOINTS_FILE

    def _load_state(self) -> dict[str, State]:
        try:
            loaded: dict[str, State] = json.loads(self.state_path.read_text())
            return loaded
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ServiceError(
                f"{self.state_path} is corrupt ({exc}); remove it and retry"
            ) from None

    def _save_state(self, state: dict[str, State]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_path)

    def _secrets(self) -> Secrets:
        path = self.data_dir / "secrets.json"
        if path.exists():
            return Secrets(**json.loads(path.read_text()))
        made = Secrets(
            postgres_password=secrets.token_urlsafe(18),
            s3_access_key="mp" + secrets.token_hex(8),
            s3_secret_key=secrets.token_urlsafe(24),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(made.__dict__, fh)
        return made

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o755)
        with open(self.data_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _services(self) -> list[Service]:
        secrets_ = self._secrets()
        return [SERVICES[name](self.data_dir, self.settings, secrets_) for name in self.names]

    def _write_endpoints(self, services: list[Service], state: dict[str, State]) -> None:
        lines = ["# Written by `marketpipe local up`; removed by `marketpipe local down`."]
        for svc in services:
            if svc.running(state.get(svc.name)):
                lines += [f"{k}={v}" for k, v in svc.env(state[svc.name]).items()]
        fd = os.open(self.endpoints_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def _start(self, svc: Service, previous: State | None, state: dict[str, State]) -> None:
        """Start ``svc`` and wait until it answers; on fresh ports if its port was taken.

        A port is chosen free and bound by the server a moment later; something else can bind
        it in between. That is retried; any other start-up failure is raised at once.
        """
        for attempt in range(1, PORT_ATTEMPTS + 1):
            log.info("starting %s", svc.name)
            started: State | None = None
            try:
                started = state[svc.name] = svc.start(previous)
                self._save_state(state)
                svc.wait_ready(started, self.settings.local.startup_timeout_s)
                return
            except ServiceError as exc:
                if attempt == PORT_ATTEMPTS or not PORT_TAKEN.search(str(exc)):
                    raise
                log.warning("%s lost its port before binding it; retrying on fresh ports", svc.name)
                if started:
                    svc.stop(started)
                previous = None

    # -- commands ------------------------------------------------------------------------------
    def up(self) -> list[ServiceStatus]:
        """Start every service that is not already healthy; wait until each answers."""
        with self._locked():
            state = self._load_state()
            services = self._services()
            try:
                for svc in services:
                    previous = state.get(svc.name)
                    if svc.healthy(previous):
                        log.info("%s already running (%s)", svc.name, svc.describe(previous or {}))
                    else:
                        if svc.running(previous):
                            log.info("%s is running but not answering: restarting", svc.name)
                            svc.stop(previous or {})
                        self._start(svc, previous, state)
                    svc.prepare(state[svc.name])
            finally:
                self._save_state(state)
                self._write_endpoints(services, state)
        return self.status()

    def status(self) -> list[ServiceStatus]:
        if not self.state_path.exists():
            return []
        state = self._load_state()
        out = []
        for svc in self._services():
            st = state.get(svc.name)
            running = svc.running(st)
            out.append(
                ServiceStatus(
                    name=svc.name,
                    running=running,
                    healthy=running and svc.healthy(st),
                    detail=svc.describe(st) if st else "never started",
                    pid=svc.pid(st) if st and running else None,
                )
            )
        return out

    def down(self, purge: bool = False) -> list[str]:
        """Stop services in reverse order; data stays unless ``purge``."""
        if not self.state_path.exists():
            return ["nothing to stop: no local stack at " + str(self.data_dir)]
        messages = []
        with self._locked():
            state = self._load_state()
            for svc in reversed(self._services()):
                st = state.get(svc.name)
                if svc.running(st):
                    svc.stop(st or {})
                    messages.append(f"stopped {svc.name}")
                else:
                    messages.append(f"{svc.name} was not running")
            self.endpoints_path.unlink(missing_ok=True)
            for st in state.values():
                st.pop("pid", None)
            self._save_state(state)
        if purge:
            shutil.rmtree(self.data_dir)
            messages.append(f"removed {self.data_dir}")
        return messages

    def stop_service(self, name: str, sig: int = signal.SIGTERM) -> bool:
        """Stop one service and keep its state, so that ``up`` starts it again on the same
        ports (clients keep its address): how fault tests take a server away. Cleanly with
        SIGTERM (its own shutdown, ``pg_ctl stop -m fast`` for PostgreSQL), as a crash with
        SIGKILL (to its process group). Returns whether it was running."""
        if name not in self.names:
            raise ServiceError(f"{name} is not part of this stack ({', '.join(self.names)})")
        with self._locked():
            state = self._load_state()
            (svc,) = [s for s in self._services() if s.name == name]
            current = state.get(name)
            if not current or not svc.running(current):
                return False
            if sig == signal.SIGTERM:
                svc.stop(current)
            else:
                terminate(svc.pid(current) or 0, sig=sig)
            return True

    def endpoint_env(self) -> dict[str, str]:
        """The settings variables of the running services (what endpoints.env holds)."""
        state = self._load_state()
        env: dict[str, str] = {}
        for svc in self._services():
            if svc.running(state.get(svc.name)):
                env.update(svc.env(state[svc.name]))
        return env
