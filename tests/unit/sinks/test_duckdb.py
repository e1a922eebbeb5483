"""The embedded DuckDB store: same tables, same idempotent upsert (DuckDB runs in-process)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from marketpipe.sinks.duckdb import DuckDBSink
from marketpipe.sinks.errors import is_transient
from marketpipe.sinks.migrations import progress_ddl
from marketpipe.sinks.tables import BARS, INDICATORS, SchemaMismatch
from tests.duckdblock import duckdb_lock_held
from tests.featurerows import T0, bar, check_rows_ending_and_progress


def test_upsert_is_idempotent_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "marketpipe.duckdb"
    sink = DuckDBSink(path)
    batch = [bar("AAPL", m, 100.0 + m) for m in range(50)]
    assert sink.upsert(BARS, batch) == 50
    assert sink.upsert(BARS, batch) == 50
    later = T0 + timedelta(seconds=1)
    sink.upsert(BARS, [bar("AAPL", 3, 1.0, T0), bar("AAPL", 3, 2.0, later)])
    sink.close()
    sink = DuckDBSink(path)  # schema creation is harmless on an existing file
    sink.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM bars").fetchone() == (50,)
    assert con.execute(
        "SELECT close FROM bars WHERE window_start = ?", [T0 + timedelta(minutes=3)]
    ).fetchone() == (2.0,)
    con.close()


def test_nullable_columns_and_empty_batches(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "x.duckdb")
    row = ("AAPL", T0, 100.0, None, None, None, None, None, None, "{}", T0)
    assert sink.upsert(INDICATORS, [row]) == 1
    assert sink.upsert(INDICATORS, []) == 0
    sink.close()


def test_a_file_from_an_older_schema_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE bars (symbol text, interval_seconds integer, window_start timestamptz)"
    )
    con.close()
    sink = DuckDBSink(path)  # opened at first use
    with pytest.raises(SchemaMismatch, match=r"table bars lacks columns \['window_end'.*move it"):
        sink.progress_before("cp", 1)
    assert not is_transient(SchemaMismatch("x"))


def test_rows_by_window_end_and_export_progress_read_back(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "marketpipe.duckdb")
    try:
        check_rows_ending_and_progress(sink)
    finally:
        sink.close()


def test_progress_from_before_closed_to_is_read_as_closed_to_the_export(tmp_path: Path) -> None:
    """A file whose progress table predates ``closed_to_us`` gets the column on opening; its
    rows read as closed up to their export point (the indicators after it are recomputed:
    the same rows)."""
    path = tmp_path / "older.duckdb"
    con = duckdb.connect(str(path))
    con.execute(progress_ddl())
    con.execute("INSERT INTO feature_progress VALUES ('cp', 3, 200, 150)")
    con.close()
    sink = DuckDBSink(path)
    try:
        assert sink.progress_before("cp", 4) == (200, 150, 150)
        sink.record_progress("cp", 4, 210, 150, 200)
        assert sink.progress_before("cp", 5) == (210, 150, 200)
    finally:
        sink.close()


def test_a_lock_held_by_another_process_is_transient_and_waits_for_nobody(tmp_path: Path) -> None:
    """The sink opens its file at first use: a lock another process holds fails that call (a
    transient error, which the job retries) and the next call after the release succeeds."""
    path = tmp_path / "locked.duckdb"
    sink = DuckDBSink(path)
    with duckdb_lock_held(path), pytest.raises(duckdb.IOException) as locked:
        sink.upsert(BARS, [bar("AAPL", 0, 100.0)])
    assert is_transient(locked.value)
    assert sink.upsert(BARS, [bar("AAPL", 0, 100.0)]) == 1
    sink.close()
