"""The embedded store: one DuckDB file with the same tables and the same idempotent upsert as
PostgreSQL, for when no server is configured (local runs, notebooks, tests of the job)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from marketpipe.sinks.migrations import progress_closed_ddl, progress_ddl, table_ddl
from marketpipe.sinks.tables import (
    FEATURE_TABLES,
    PROGRESS_KEPT,
    Recorded,
    TableSpec,
    arrow_schema,
    check_columns,
    progress_sql,
    rows_ending_sql,
)


class DuckDBSink:
    """One connection, opened at first use: only one process may hold a DuckDB file for
    writing, and a lock held by another one (a notebook, `marketpipe latest`) then fails the
    micro-batch that needs it, which the job retries, rather than the job's start."""

    name = "duckdb"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.endpoint = str(self.path)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()  # one DuckDB connection is not for concurrent writers
        self._progress = progress_sql("?")

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection (callers hold ``_lock``), the tables created or checked on opening."""
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path))
            try:
                for statement in [*table_ddl(), progress_ddl(), progress_closed_ddl()]:
                    con.execute(statement)
                for table in FEATURE_TABLES:
                    present = con.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                        [table.name],
                    ).fetchall()
                    check_columns(
                        str(self.path), table, (c for (c,) in present),
                        "the file was written by an older marketpipe; move it away (the hot store "
                        "is rebuilt from the archive with `marketpipe backfill`)",
                    )  # fmt: skip
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def upsert(self, table: TableSpec, rows: Sequence[Sequence[object]]) -> int:
        """Merge ``rows`` (tuples in ``table.columns`` order) by key; the latest
        ``version_column`` wins among duplicates in one batch. Returns rows merged."""
        if not rows:
            return 0
        columns = list(zip(*rows, strict=True))
        batch = pa.table(
            {name: list(col) for name, col in zip(table.columns, columns, strict=True)}
        )
        cols = ", ".join(table.columns)
        key = ", ".join(table.key)
        updates = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
        with self._lock:
            self.con.register("mp_batch", batch)
            try:
                self.con.execute("BEGIN")
                merged = self.con.execute(
                    f"INSERT INTO {table.name} ({cols}) "
                    f"SELECT DISTINCT ON ({key}) {cols} FROM mp_batch "
                    f"ORDER BY {key}, {table.version_column} DESC "
                    f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
                ).fetchone()
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
            finally:
                self.con.unregister("mp_batch")
        return int(merged[0]) if merged else len(rows)

    def states_before(self, firsts: Mapping[str, datetime]) -> dict[str, str]:
        """Per symbol, the indicator state of its last row before ``firsts[symbol]``."""
        if not firsts:
            return {}
        probe = pa.table({"symbol": list(firsts), "first_start": list(firsts.values())})
        with self._lock:
            self.con.register("mp_probe", probe)
            try:
                rows = self.con.execute(
                    "SELECT i.symbol, arg_max(i.state, i.window_start) FROM indicators i "
                    "JOIN mp_probe p ON i.symbol = p.symbol AND i.window_start < p.first_start "
                    "GROUP BY i.symbol"
                ).fetchall()
            finally:
                self.con.unregister("mp_probe")
        return {str(symbol): str(state) for symbol, state in rows}

    def rows_ending(
        self, table: TableSpec, after: datetime, upto: datetime, longest: timedelta
    ) -> pa.Table:
        """Rows of ``table`` whose window ends in ``(after, upto]`` (windows at most ``longest``
        long), in key order."""
        with self._lock:
            got = self.con.sql(rows_ending_sql(table, "?"), params=[after, upto, after - longest])
            return got.to_arrow_table().cast(arrow_schema(table))

    def progress_before(self, checkpoint: str, batch_id: int) -> Recorded | None:
        with self._lock:
            rows = self.con.execute(
                self._progress.before, [checkpoint, batch_id]
            ).fetchall()  # all: DuckDB keeps an unread result open and refuses the next query
        return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def record_progress(
        self, checkpoint: str, batch_id: int, max_event_us: int, exported_to_us: int,
        closed_to_us: int,
    ) -> None:  # fmt: skip
        with self._lock:
            self.con.execute("BEGIN")
            try:
                self.con.execute(
                    self._progress.record,
                    [checkpoint, batch_id, max_event_us, exported_to_us, closed_to_us],
                ).fetchall()
                self.con.execute(
                    self._progress.prune, [checkpoint, batch_id - PROGRESS_KEPT]
                ).fetchall()
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
