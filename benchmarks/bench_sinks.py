"""PostgreSQL sink throughput: idempotent upsert (COPY to staging + INSERT ON CONFLICT) versus a
plain binary COPY into a table of the same shape and primary key, on the benchmark's own
PostgreSQL, same run.

    python benchmarks/bench_sinks.py [--runs 5] [--count 300000]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from harness import arguments, own_stack, report
from marketpipe.settings import PostgresSettings
from marketpipe.sinks.migrations import migrate
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import BARS

BATCH = 50_000


def bar_rows(count: int) -> list[tuple[object, ...]]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    written = datetime.now(UTC)
    rows = []
    for i in range(count):
        start = t0 + timedelta(seconds=i // 50)
        rows.append((f"SYM{i % 50:03d}", 1, start, start + timedelta(seconds=1), 100.0, 101.0,
                     99.0, 100.5, 1000.0, 42, 100.2, 99.99, 100.01, 0.02, written))  # fmt: skip
    return rows


def plain_copy(cfg: PostgresSettings, rows: list[tuple[object, ...]]) -> float:
    with psycopg.connect(cfg.conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bars_copy")
        conn.execute("CREATE TABLE bars_copy (LIKE bars INCLUDING ALL)")  # same key, logged
        types = [t for (t,) in conn.execute(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = "
            "'bars'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )]  # fmt: skip
        start = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy("COPY bars_copy FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(types)
                for row in rows[offset : offset + BATCH]:
                    copy.write_row(row)
        return len(rows) / (time.perf_counter() - start)


def upsert(cfg: PostgresSettings, rows: list[tuple[object, ...]], truncate: bool) -> float:
    sink = PostgresSink(cfg)
    if truncate:
        sink.conn.execute("TRUNCATE bars")
    start = time.perf_counter()
    for offset in range(0, len(rows), BATCH):
        sink.upsert(BARS, rows[offset : offset + BATCH])
    elapsed = time.perf_counter() - start
    sink.close()
    return len(rows) / elapsed


def main() -> int:
    args = arguments(__doc__.split("\n", 1)[0])
    with own_stack(["postgres"]) as bench:
        cfg = bench.settings.postgres
        migrate(cfg.conninfo())
        rows = bar_rows(args.count)
        plain, fresh, again = [], [], []
        for i in range(args.runs):
            plain.append(plain_copy(cfg, rows))
            fresh.append(upsert(cfg, rows, truncate=True))
            again.append(upsert(cfg, rows, truncate=False))  # every row conflicts: updates
            print(
                f"run {i + 1}/{args.runs}: plain COPY {plain[-1]:>9,.0f}/s  upsert new rows "
                f"{fresh[-1]:>9,.0f}/s  upsert existing rows {again[-1]:>9,.0f}/s",
                flush=True,
            )
        ratio = statistics.median(f / p for f, p in zip(fresh, plain, strict=True))
        report(
            f"medians of {args.runs} runs, {args.count:,} bar rows, batches of {BATCH:,}",
            [
                ("plain binary COPY (reference)", f"{statistics.median(plain):>10,.0f} /s"),
                ("upsert, new rows", f"{statistics.median(fresh):>10,.0f} /s"),
                ("upsert, every row already there", f"{statistics.median(again):>10,.0f} /s"),
                ("ratio upsert (new) / plain COPY", f"{ratio:>12.2f}"),
                ("target: PostgreSQL sink", ">= 150,000 /s"),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
