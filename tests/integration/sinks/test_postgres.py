"""Migrations and idempotent upserts against the real local PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from marketpipe.settings import Settings
from marketpipe.sinks.migrations import MIGRATIONS_TABLE, STEPS, migrate
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import BARS, WINDOW_FEATURES, SchemaMismatch
from tests.featurerows import T0, bar, check_rows_ending_and_progress
from tests.integration.helpers import run_cli


def test_migrate_is_idempotent_and_recorded(database: Settings) -> None:
    first = run_cli(database, "db", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("timescaledb: not available on this server")
    assert f"  1 {STEPS[0].description}: applied" in first.stdout
    second = run_cli(database, "db", "migrate")
    assert second.returncode == 0, second.stderr
    assert "already applied" in second.stdout
    with psycopg.connect(database.postgres.conninfo()) as conn:
        versions = [v for (v,) in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")]
        tables = {t for (t,) in conn.execute("SELECT tablename FROM pg_tables")}
        indexes = {i for (i,) in conn.execute("SELECT indexname FROM pg_indexes")}
    assert versions == [s.version for s in STEPS]
    assert {"bars", "window_features", "indicators", "window_buckets", "feature_progress"} <= tables
    # The job reads closed windows and buckets back by window_end, every micro-batch.
    assert {"bars_window_end", "window_features_window_end", "window_buckets_window_end"} <= indexes


PG_TYPES = {"text": "text", "int32": "integer", "int64": "bigint", "float": "double precision",
            "time": "timestamp with time zone"}  # fmt: skip


def test_postgres_holds_what_the_tables_declare(database: Settings) -> None:
    from marketpipe.sinks.tables import COLUMN_KINDS, FEATURE_TABLES

    migrate(database.postgres.conninfo())
    with psycopg.connect(database.postgres.conninfo()) as conn:
        for table in FEATURE_TABLES:
            info = conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                (table.name,),
            ).fetchall()
            assert tuple(name for name, _, _ in info) == table.columns
            for name, kind, nullable in info:
                assert kind == PG_TYPES[COLUMN_KINDS[name]], (table.name, name)
                assert (nullable == "YES") == (name in table.nullable), (table.name, name)


def test_migrate_can_create_the_database_first(database: Settings) -> None:
    name = database.postgres.database + "_new"
    fresh = database.model_copy(
        update={"postgres": database.postgres.model_copy(update={"database": name})}
    )
    try:
        first = run_cli(fresh, "db", "migrate", "--create-database")
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith(f"created database {name}\n")
        again = run_cli(fresh, "db", "migrate", "--create-database")
        assert again.returncode == 0, again.stderr
        assert "created" not in again.stdout  # it exists: left as it is
        assert "already applied" in again.stdout
    finally:
        with psycopg.connect(database.postgres.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_same_batch_twice_leaves_the_same_rows(database: Settings) -> None:
    migrate(database.postgres.conninfo())
    sink = PostgresSink(database.postgres)
    batch = [bar("AAPL", m, 100.0 + m) for m in range(100)] + [bar("MSFT", 0, 415.0)]
    assert sink.upsert(BARS, batch) == 101
    assert sink.upsert(BARS, batch) == 101  # replayed micro-batch: updates, no duplicates
    later = T0 + timedelta(seconds=5)
    assert sink.upsert(BARS, [bar("AAPL", 5, 999.0, later), bar("AAPL", 5, 998.0, T0)]) == 1
    with psycopg.connect(database.postgres.conninfo()) as conn:
        count = conn.execute("SELECT count(*) FROM bars").fetchone()
        close = conn.execute(
            "SELECT close FROM bars WHERE symbol = 'AAPL' AND window_start = %s",
            (T0 + timedelta(minutes=5),),
        ).fetchone()
    assert count == (101,)
    assert close == (999.0,)  # within a batch the latest written_at wins
    sink.close()


def test_missing_schema_says_to_migrate(database: Settings) -> None:
    sink = PostgresSink(database.postgres)
    with pytest.raises(SchemaMismatch, match=r"table window_features lacks columns .*db migrate"):
        sink.upsert(WINDOW_FEATURES, [])
    sink.close()


def test_progress_from_before_migration_6_says_to_migrate_then_reads(database: Settings) -> None:
    """A database migrated before ``closed_to_us`` existed: the job's first read of its
    progress says to migrate; after ``db migrate`` the old rows read as closed up to their
    export point."""
    conninfo = database.postgres.conninfo()
    migrate(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE feature_progress DROP COLUMN closed_to_us")
        conn.execute(f"DELETE FROM {MIGRATIONS_TABLE} WHERE version = 6")
        conn.execute("INSERT INTO feature_progress VALUES ('cp', 3, 200, 150)")
    sink = PostgresSink(database.postgres)
    try:
        with pytest.raises(SchemaMismatch, match=r"feature_progress is older: run .*db migrate"):
            sink.progress_before("cp", 4)
    finally:
        sink.close()
    assert "  6 feature_progress.closed_to_us" in "\n".join(migrate(conninfo))
    sink = PostgresSink(database.postgres)
    try:
        assert sink.progress_before("cp", 4) == (200, 150, 150)
    finally:
        sink.close()


def test_rows_by_window_end_and_export_progress_read_back(database: Settings) -> None:
    migrate(database.postgres.conninfo())
    sink = PostgresSink(database.postgres)
    try:
        check_rows_ending_and_progress(sink)
    finally:
        sink.close()
