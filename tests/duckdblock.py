"""Another process holding a DuckDB file's lock, as a notebook or a second job would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLD = (
    "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    "sys.stdin.read()"
)


@contextmanager
def duckdb_lock_held(path: Path) -> Iterator[None]:
    """Until the block ends, a child process has ``path`` open for writing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.communicate("")  # stdin closes: it exits and the lock goes
