"""A benchmark stopped with SIGTERM leaves its ``with`` blocks: the local stack is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys, time
from pathlib import Path
from benchmarks.pipeline import stop_on_sigterm

class Stack:
    def __enter__(self):
        Path(sys.argv[1]).write_text("up")
    def __exit__(self, *exc):
        Path(sys.argv[1]).write_text("down")

stop_on_sigterm()
with Stack():
    print("ready", flush=True)
    time.sleep(60)
"""


def test_sigterm_runs_the_cleanup_of_every_with_block(tmp_path: Path) -> None:
    marker = tmp_path / "stack"
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(marker)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5  # not the 60 s sleep
    assert marker.read_text() == "down"
