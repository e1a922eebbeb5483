"""Small tick files the tests write for themselves (never read from ../shared)."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def kibot_rows(
    n: int, start: datetime = datetime(2024, 3, 8, 9, 30), per_second: int = 3
) -> list[str]:
    """Kibot tick lines, ``per_second`` ticks sharing each second, prices walking by a cent."""
    rows = []
    price = 100.0
    for i in range(n):
        t = start + timedelta(seconds=i // per_second)
        price = round(price + (0.01 if i % 5 in (0, 2) else -0.01), 2)
        bid, ask = price - 0.01, price + 0.01
        rows.append(f"{t:%m/%d/%Y},{t:%H:%M:%S},{price:.2f},{bid:.2f},{ask:.2f},{100 + i % 7}")
    return rows


def write_lines(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_parquet(path: Path, table: dict[str, list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), path)
    return path
