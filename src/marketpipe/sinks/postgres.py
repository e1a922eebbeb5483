"""Idempotent bulk upserts into PostgreSQL/TimescaleDB.

Each batch is copied (binary COPY, the fastest path into PostgreSQL) into a temporary staging
table, then merged with ``INSERT ... SELECT DISTINCT ON (key) ... ON CONFLICT (key) DO UPDATE``,
all in one transaction. Writing the same batch twice leaves the same rows: a replayed
micro-batch or a restarted job neither duplicates nor loses anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import make_conninfo

from marketpipe.settings import PostgresSettings
from marketpipe.sinks.tables import (
    PROGRESS_KEPT,
    PROGRESS_TABLE,
    Recorded,
    SchemaMismatch,
    TableSpec,
    arrow_schema,
    check_columns,
    progress_sql,
    rows_ending_sql,
)

log = logging.getLogger(__name__)


# A server that vanishes without a word (a node gone, a network split) must surface as an error
# within seconds, not hang a micro-batch for the kernel's two hours: bounded connect, and TCP
# keepalives that give up on a silent peer after about 30 s.
CONNECT_OPTIONS: dict[str, int] = {
    "connect_timeout": 10, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 4,
}  # fmt: skip


class PostgresSink:
    name = "postgres"

    def __init__(self, cfg: PostgresSettings) -> None:
        self.cfg = cfg
        self.endpoint = f"{cfg.host}:{cfg.port}/{cfg.database}"
        self._conn: psycopg.Connection | None = None
        self._types: dict[str, list[str]] = {}
        self._progress = progress_sql("%s")
        # One connection, used by the features query and its background export: a call's
        # statements (an upsert's transaction) must not interleave with another's.
        self._lock = threading.RLock()

    @property
    def conn(self) -> psycopg.Connection:
        """The connection, opened again if the last one died (a server restart or shutdown
        closes it): the next micro-batch, or its retry, reconnects."""
        if self._conn is None or self._conn.closed:
            # autocommit: each upsert's conn.transaction() is then a real, committed transaction.
            conninfo = make_conninfo(self.cfg.conninfo(), **CONNECT_OPTIONS)
            self._conn = psycopg.connect(conninfo, autocommit=True)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def _column_types(self, table: TableSpec) -> list[str]:
        """The table's column types, for binary COPY (asked once per table). A missing table
        has no columns: the error says to migrate."""
        if table.name not in self._types:
            rows = self.conn.execute(
                "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                (table.name,),
            ).fetchall()
            types: dict[str, str] = dict(rows)
            check_columns(
                f"PostgreSQL {self.endpoint}", table, types, "run `marketpipe db migrate`"
            )
            self._types[table.name] = [types[c] for c in table.columns]
        return self._types[table.name]

    def upsert(self, table: TableSpec, rows: Iterable[Sequence[object]]) -> int:
        """Merge ``rows`` (tuples in ``table.columns`` order) by key; returns rows merged."""
        stage = sql.Identifier(f"stage_{table.name}")
        target = sql.Identifier(table.name)
        cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
        key = sql.SQL(", ").join(map(sql.Identifier, table.key))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in table.columns
            if c not in table.key
        )
        with self._lock:
            types = self._column_types(table)
            conn = self.conn
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                        "ON COMMIT DELETE ROWS"
                    ).format(stage, target)
                )
                with cur.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols)
                ) as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {target} ({cols}) "
                        "SELECT DISTINCT ON ({key}) {cols} FROM {stage} "
                        "ORDER BY {key}, {version} DESC "
                        "ON CONFLICT ({key}) DO UPDATE SET {updates}"
                    ).format(
                        target=target,
                        cols=cols,
                        stage=stage,
                        key=key,
                        updates=updates,
                        version=sql.Identifier(table.version_column),
                    )
                )
                return cur.rowcount

    def states_before(self, firsts: Mapping[str, datetime]) -> dict[str, str]:
        """Per symbol, the indicator state of its last row before ``firsts[symbol]``."""
        if not firsts:
            return {}
        with self._lock:
            rows = self.conn.execute(
                "SELECT DISTINCT ON (i.symbol) i.symbol, i.state FROM indicators i "
                "JOIN unnest(%s::text[], %s::timestamptz[]) AS p(symbol, first_start) "
                "ON i.symbol = p.symbol AND i.window_start < p.first_start "
                "ORDER BY i.symbol, i.window_start DESC",
                (list(firsts), list(firsts.values())),
            ).fetchall()
        return {str(symbol): str(state) for symbol, state in rows}

    def rows_ending(
        self, table: TableSpec, after: datetime, upto: datetime, longest: timedelta
    ) -> pa.Table:
        """Rows of ``table`` whose window ends in ``(after, upto]`` (windows at most ``longest``
        long), in key order."""
        with self._lock:
            rows = self.conn.execute(
                rows_ending_sql(table, "%s"), (after, upto, after - longest)
            ).fetchall()
        schema = arrow_schema(table)
        columns: list[Sequence[object]] = [[] for _ in table.columns]
        if rows:
            columns = list(zip(*rows, strict=True))
        return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema)

    def progress_before(self, checkpoint: str, batch_id: int) -> Recorded | None:
        try:
            with self._lock:
                row = self.conn.execute(self._progress.before, (checkpoint, batch_id)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            what = "is missing" if isinstance(exc, psycopg.errors.UndefinedTable) else "is older"
            raise SchemaMismatch(
                f"PostgreSQL {self.endpoint}: table {PROGRESS_TABLE} {what}: "
                "run `marketpipe db migrate`"
            ) from exc
        return (int(row[0]), int(row[1]), int(row[2])) if row else None

    def record_progress(
        self, checkpoint: str, batch_id: int, max_event_us: int, exported_to_us: int,
        closed_to_us: int,
    ) -> None:  # fmt: skip
        with self._lock, self.conn.transaction():
            self.conn.execute(
                self._progress.record,
                (checkpoint, batch_id, max_event_us, exported_to_us, closed_to_us),
            )
            self.conn.execute(self._progress.prune, (checkpoint, batch_id - PROGRESS_KEPT))
