"""RSS and CPU of a process with all its descendants, read from /proc (Linux; no psutil).

A stage is a process tree: the features job is the Python driver, its JVM and the JVM's
Python workers; PostgreSQL is the postmaster and its backends. Each is measured whole.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of ``pid``; None if it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def process_table() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent pid, CPU seconds)."""
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            got = _stat(int(entry.name))
            if got is not None:
                table[int(entry.name)] = got
    return table


def tree(root: int, table: dict[int, tuple[int, float]]) -> list[int]:
    """``root`` and its descendants that are alive in ``table``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root] if root in table else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    cpu_pct: float  # of one core, since the previous sample (100 = one core busy)


@dataclass
class ResourceSampler:
    """Call ``sample`` with the roots to measure (name -> pid) every few seconds."""

    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (t, cpu s)

    def sample(self, roots: dict[str, int]) -> dict[str, Usage]:
        table = process_table()
        now = time.monotonic()
        out = {}
        for name, root in roots.items():
            pids = tree(root, table)
            if not pids:
                continue
            cpu = sum(table[p][1] for p in pids)
            rss = sum(_rss_bytes(p) for p in pids) / 2**20
            before = self._last.get(name)
            pct = 0.0
            if before is not None and now > before[0]:
                pct = max(0.0, (cpu - before[1]) / (now - before[0]) * 100)
            self._last[name] = (now, cpu)
            out[name] = Usage(round(rss, 1), round(pct, 1))
        return out
