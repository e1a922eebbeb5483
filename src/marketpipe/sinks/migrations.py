"""The hot store's schema, owned by the project: ``marketpipe db migrate``.

Versioned steps, each applied once in its own transaction and recorded in
``marketpipe_schema_migrations``. The same tables are created on plain PostgreSQL and on
TimescaleDB; where the ``timescaledb`` extension is available, they also become hypertables on
``window_start`` with compression and retention policies, and ``bars`` gets an hourly continuous
aggregate. Running ``migrate`` again is harmless.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from marketpipe.sinks.tables import (
    BARS,
    INDICATORS,
    PROGRESS_TABLE,
    WINDOW_BUCKETS,
    WINDOW_FEATURES,
)

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "marketpipe_schema_migrations"


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    sql: Callable[[bool], list[str]]  # timescale available -> statements


def table_ddl() -> list[str]:
    """CREATE TABLE statements for the feature tables (declared in ``tables``); also valid
    DuckDB SQL."""
    return [t.ddl() for t in (BARS, WINDOW_FEATURES, INDICATORS)] + [bucket_ddl()]


def bucket_ddl() -> str:
    return WINDOW_BUCKETS.ddl()


def _buckets(timescale: bool) -> list[str]:
    """The window buckets; on TimescaleDB a hypertable kept 7 days (they matter only while
    their windows are open, and to a backfill that continues from them)."""
    statements = [bucket_ddl()]
    if timescale:
        statements += [
            "SELECT create_hypertable('window_buckets', 'window_start', if_not_exists => TRUE, "
            "migrate_data => TRUE, chunk_time_interval => INTERVAL '1 day')",
            "SELECT add_retention_policy('window_buckets', INTERVAL '7 days', "
            "if_not_exists => TRUE)",
        ]
    return statements


def progress_ddl() -> str:
    """The features query's export progress (``tables.PROGRESS_TABLE``): per checkpoint and
    micro-batch, the newest event time seen and how far closed windows have been exported,
    both as epoch microseconds. A replayed batch reads the row of the batch before it."""
    return f"""
        CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
            checkpoint     text   NOT NULL,
            batch_id       bigint NOT NULL,
            max_event_us   bigint NOT NULL,
            exported_to_us bigint NOT NULL,
            PRIMARY KEY (checkpoint, batch_id)
        )"""


def progress_closed_ddl() -> str:
    """Migration 6: the end up to which the features query has closed final windows (its
    indicators), recorded beside the export point (NULL in older rows: the export point)."""
    return f"ALTER TABLE {PROGRESS_TABLE} ADD COLUMN IF NOT EXISTS closed_to_us bigint"


def _timescale(available: bool) -> list[str]:
    if not available:
        return []
    statements = ["CREATE EXTENSION IF NOT EXISTS timescaledb"]
    for table, segment in (
        ("bars", "symbol, interval_seconds"),
        ("window_features", "symbol"),
        ("indicators", "symbol"),
    ):
        statements += [
            f"SELECT create_hypertable('{table}', 'window_start', if_not_exists => TRUE, "
            "migrate_data => TRUE, chunk_time_interval => INTERVAL '1 day')",
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{segment}')",
            f"SELECT add_compression_policy('{table}', INTERVAL '7 days', if_not_exists => TRUE)",
            f"SELECT add_retention_policy('{table}', INTERVAL '90 days', if_not_exists => TRUE)",
        ]
    statements += [
        """
        CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h
        WITH (timescaledb.continuous) AS
        SELECT symbol,
               time_bucket(INTERVAL '1 hour', window_start) AS bucket,
               first(open, window_start) AS open,
               max(high) AS high,
               min(low) AS low,
               last(close, window_start) AS close,
               sum(volume) AS volume,
               sum(trades) AS trades
        FROM bars
        WHERE interval_seconds = 60
        GROUP BY symbol, bucket
        WITH NO DATA""",
        "SELECT add_continuous_aggregate_policy('bars_1h', start_offset => INTERVAL '3 hours', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes', "
        "if_not_exists => TRUE)",
    ]
    return statements


STEPS: tuple[Step, ...] = (
    Step(1, "feature tables: bars, window_features, indicators", lambda _: table_ddl()),
    Step(2, "TimescaleDB: hypertables, compression, retention, bars_1h aggregate", _timescale),
    Step(3, "feature_progress: how far closed windows are exported", lambda _: [progress_ddl()]),
    Step(4, "window_buckets: what sliding windows are combined from", _buckets),
    Step(
        5,
        "indexes on window_end: the job reads closed windows and buckets back by it",
        lambda _: [
            f"CREATE INDEX IF NOT EXISTS {table}_window_end ON {table} (window_end)"
            for table in ("bars", "window_features", "window_buckets")
        ],
    ),
    Step(
        6,
        "feature_progress.closed_to_us: how far indicators are computed",
        lambda _: [progress_closed_ddl()],
    ),
)


def timescale_available(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def applied_versions(conn: psycopg.Connection) -> set[int]:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        "version integer PRIMARY KEY, description text NOT NULL, "
        "timescale boolean NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return {v for (v,) in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}


def extension_update(installed: str | None, default: str | None) -> str | None:
    """The version ``ALTER EXTENSION timescaledb UPDATE`` would move to, or None when the
    extension is not installed or already at the version the server's files provide."""
    if installed is None or default is None or installed == default:
        return None
    return default


def update_timescaledb(conninfo: str) -> str:
    """After an image bump the server's TimescaleDB files are newer than the extension in the
    database: update it. TimescaleDB wants the ALTER as the first command of its session, so
    it gets a connection of its own."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT installed_version, default_version FROM pg_available_extensions "
            "WHERE name = 'timescaledb'"
        ).fetchone()
    installed, default = row if row else (None, None)
    target = extension_update(installed, default)
    if row is None:
        return "timescaledb: not available on this server (plain PostgreSQL tables)"
    if target is None:
        return f"timescaledb: {installed or 'not installed'}, up to date"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ALTER EXTENSION timescaledb UPDATE")
    log.info("timescaledb updated from %s to %s", installed, target)
    return f"timescaledb: updated from {installed} to {target}"


def migrate(conninfo: str) -> list[str]:
    """Update the TimescaleDB extension if the server has a newer one, then apply every step
    not applied yet; returns one line per step (applied or skipped)."""
    lines = [update_timescaledb(conninfo)]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # One migrator at a time, whoever runs it (a Helm hook Job and a developer, say).
        conn.execute("SELECT pg_advisory_lock(hashtext('marketpipe-migrations'))")
        try:
            timescale = timescale_available(conn)
            done = applied_versions(conn)
            for step in STEPS:
                if step.version in done:
                    lines.append(f"{step.version:>3} {step.description}: already applied")
                    continue
                # TimescaleDB's continuous aggregates cannot be created inside a transaction.
                in_transaction = not (timescale and step.version == 2)
                with conn.transaction() if in_transaction else contextlib.nullcontext():
                    for statement in step.sql(timescale):
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (version, description, timescale) "
                        "VALUES (%s, %s, %s)",
                        (step.version, step.description, timescale),
                    )
                suffix = (
                    "" if timescale or step.version != 2 else " (no timescaledb: nothing to do)"
                )
                lines.append(f"{step.version:>3} {step.description}: applied{suffix}")
                log.info("migration %d applied", step.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('marketpipe-migrations'))")
    return lines


def create_database(admin_conninfo: str, name: str) -> bool:
    """Create database ``name`` (through a connection to the server's maintenance database)
    unless it exists; True when it was created."""
    from psycopg import sql

    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
