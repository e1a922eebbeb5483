"""PostgreSQL sink throughput: idempotent upsert (COPY to staging + INSERT ON CONFLICT) versus a
plain binary COPY into a table of the same shape and primary key, on the benchmark's own
PostgreSQL, same run.

    python benchmarks/bench_sinks.py [--runs 5] [--count 300000] [--smoke] [--running-services]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa

from harness import arguments, report, scratch_database, stack
from marketpipe.settings import PostgresSettings
from marketpipe.sinks.migrations import migrate
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import ARROW_TYPES, BARS

BATCH = 50_000
#: A plausible value per Arrow type of the feature tables' columns.
TYPED_VALUES: dict[pa.DataType, object] = {
    pa.string(): "x", pa.int32(): 1, pa.int64(): 42, pa.float64(): 100.0,
    pa.timestamp("us", tz="UTC"): datetime(2024, 1, 1, tzinfo=UTC),
}  # fmt: skip


def bar_rows(count: int) -> list[tuple[object, ...]]:
    """``count`` one-second bars of 50 symbols, in ``BARS.columns`` order: the key and times are
    set here, every other column gets a value of its Arrow type, so a column added to the table
    spec is filled without touching this benchmark."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    filler = {c: TYPED_VALUES[ARROW_TYPES[c]] for c in BARS.columns}
    filler["written_at"] = datetime.now(UTC)
    rows = []
    for i in range(count):
        start = t0 + timedelta(seconds=i // 50)
        end = start + timedelta(seconds=1)
        values = {**filler, "symbol": f"SYM{i % 50:03d}", "interval_seconds": 1,
                  "window_start": start, "window_end": end, "last_event_time": end}  # fmt: skip
        rows.append(tuple(values[c] for c in BARS.columns))
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
    with stack(args, ["postgres"]) as bench, scratch_database(bench.settings.postgres) as cfg:
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
