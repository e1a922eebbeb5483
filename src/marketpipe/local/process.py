"""Starting, finding and stopping the detached server processes of the local stack."""

from __future__ import annotations

import contextlib
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class ServiceError(Exception):
    """A local service could not be started or stopped; the message says why and what to do."""


def find_executable(name: str, hint: str) -> str:
    """``name`` on PATH or beside this Python (a venv's bin), else a ServiceError with ``hint``."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found: {hint}")


def find_postgres_bin() -> Path:
    """The newest PostgreSQL server bin directory (Debian layout first, then PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServiceError(
        "PostgreSQL server not found (no initdb): run `make install` "
        "(it runs apt-get install postgresql)"
    )


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")

# What our servers print when the port they were given is taken (PostgreSQL, SeaweedFS, noida-db).
PORT_TAKEN = re.compile(r"already in use|port \d+ .*not available|could not bind", re.I)


def server_port_range() -> range:
    """Ports for our servers: the 16k just below the kernel's ephemeral range.

    The kernel hands ephemeral ports to outgoing connections, so a free port chosen inside that
    range can be taken by any client between choosing it and the server binding it (this
    happened in CI); ports below the range are only taken by servers that ask for them.
    """
    try:
        low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(1024, low - 16384), low)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, preferably outside the ephemeral range."""
    candidates = server_port_range()
    if candidates:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.choice(candidates)
            if port_is_free(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_ports(previous: Sequence[int] | None, count: int, wait_s: float = 3.0) -> list[int]:
    """Reuse the previous ports when they are free again (stable endpoints), else fresh ones.

    A server that just died releases its sockets a moment later, so wait up to ``wait_s``.
    """
    if previous and len(previous) == count:
        deadline = time.monotonic() + wait_s
        while True:
            if all(port_is_free(p) for p in previous):
                return list(previous)
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def spawn(argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> int:
    """Start a detached process in its own session, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    # The stack outlives this Popen object on purpose; stop it with terminate().
    proc.returncode = 0
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    """Collect an exited child of ours so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group of ``pid``, escalate to SIGKILL after ``timeout_s``.

    Returns True if it exited on the polite signal.
    """
    if not pid_alive(pid):
        return True
    for target_sig in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, target_sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, target_sig)
        deadline = time.monotonic() + (timeout_s if target_sig == sig else 5.0)
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return target_sig == sig
            time.sleep(0.05)
    raise ServiceError(f"process {pid} did not exit after SIGKILL")


def tail(path: Path, lines: int = 15) -> str:
    """The end of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
