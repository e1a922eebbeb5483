"""The web dashboard's reads, against a real DuckDB file and a real PostgreSQL holding the
tables the features job writes: the same answers from both, bounded queries, and a failure a
person can act on when the store is missing, empty of tables, or held by a running job."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pytest

from benchmarks.dashboard_view import DAY_START, write_day
from marketpipe.dashboard import store as queries
from marketpipe.dashboard.store import HotStore, StoreUnavailable, open_store
from marketpipe.settings import Settings
from marketpipe.sinks.migrations import migrate
from tests.duckdblock import duckdb_lock_held

SYMBOLS_N, SECONDS = 3, 1_800


def copy_into_postgres(db: Path, settings: Settings) -> None:
    """The generated rows, into PostgreSQL's feature tables (created by `db migrate`)."""
    migrate(settings.postgres.conninfo())
    src = duckdb.connect(str(db), read_only=True)
    with psycopg.connect(settings.postgres.conninfo()) as conn, conn.cursor() as cur:
        for table in ("bars", "indicators", "window_features"):
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    src.close()


def check_answers(store: HotStore) -> None:
    assert store.symbols() == ["SYM000", "SYM001", "SYM002"]
    assert store.intervals() == [1, 60]
    bars = store.bars("SYM001", 1, 100)
    assert len(bars) == 100
    assert bars["window_start"].is_monotonic_increasing  # oldest first, the newest 100
    assert bars["window_start"].iloc[-1] == DAY_START.replace(minute=59, second=59)
    minute = store.bars("SYM001", 60, 1_000)
    assert len(minute) == SECONDS // 60
    since = minute["window_start"].iloc[10]
    ind = store.indicators("SYM001", since, 1_000)
    assert len(ind) == SECONDS // 60 - 10
    assert ind["window_start"].iloc[0] == since
    assert ind["sma_20"].notna().sum() == SECONDS // 60 - 19
    vol = store.volatility("SYM001", since, 50)
    assert len(vol) == 50  # the limit holds
    assert vol["window_end"].is_monotonic_increasing
    fresh = store.freshness().set_index("output")
    assert set(fresh.index) == {"bars 1 s", "bars 60 s", "window features"}
    assert fresh.loc["bars 1 s", "latency_p50_s"] == pytest.approx(0.4)  # 1.3 s - 0.9 s
    assert fresh.loc["bars 1 s", "rows"] == 3 * (5 * 60 + 1)  # windows ending in 5 min


def test_duckdb_and_postgres_answer_alike(tmp_path: Path, database: Settings) -> None:
    db = tmp_path / "hot.duckdb"
    write_day(db, SYMBOLS_N, SECONDS)
    settings = database.model_copy(
        update={"features": database.features.model_copy(update={"duckdb_path": str(db)})}
    )
    with open_store(settings, "duckdb") as store:
        check_answers(store)
    copy_into_postgres(db, settings)
    with open_store(settings, "postgres") as store:
        check_answers(store)


def test_postgres_reads_go_through_the_indexes(tmp_path: Path, database: Settings) -> None:
    """Bounded: with sequential scans priced out, no query still needs one of a feature table
    (each names a symbol and a limit, or bounds time by the indexed window_end)."""
    db = tmp_path / "hot.duckdb"
    write_day(db, SYMBOLS_N, 120)
    copy_into_postgres(db, database)
    params = {
        queries.BARS: ("SYM001", 1, 10), queries.INDICATORS: ("SYM001", DAY_START, 10),
        queries.VOLATILITY: ("SYM001", DAY_START, 10), queries.SYMBOLS: (),
        queries.INTERVALS: (),
    }  # fmt: skip
    with psycopg.connect(database.postgres.conninfo()) as conn:
        conn.execute("SET enable_seqscan = off")
        for sql, args in params.items():
            plan = "\n".join(
                r[0] for r in conn.execute("EXPLAIN " + sql.format(p="%s"), args).fetchall()
            )
            assert "Seq Scan" not in plan, plan


def test_missing_or_held_stores_say_what_to_do(tmp_path: Path, database: Settings) -> None:
    db = tmp_path / "hot.duckdb"
    settings = database.model_copy(
        update={"features": database.features.model_copy(update={"duckdb_path": str(db)})}
    )
    with pytest.raises(StoreUnavailable, match=r"the features job creates it"):
        open_store(settings, "duckdb").__enter__()
    assert not db.exists()  # reading created nothing
    write_day(db, 1, 60)
    with duckdb_lock_held(db), pytest.raises(StoreUnavailable, match="running features job holds"):
        open_store(settings, "duckdb").__enter__()
    with (
        open_store(settings, "postgres") as store,  # no `db migrate` yet
        pytest.raises(StoreUnavailable, match="marketpipe db migrate"),
    ):
        store.symbols()
    down = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"port": 1})}
    )
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1 is not answering.*local up"):
        open_store(down, "postgres").__enter__()
