"""Sink outages while the features job runs on PostgreSQL, the production hot store: PostgreSQL
or the S3 server stopped for 20 s mid-stream, the DuckDB file locked by another process. The
job retries instead of dying and catches up once the sink is back; afterwards every closed
window equals the validator's recomputation and no key is in any table twice. Given up, it
exits 1 with one line, and a restart resumes from the checkpoint losing and doubling nothing.

The servers stopped belong to a stack of this module's own: stopping the session's would break
the tests running beside these.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest
from pyspark.sql import SparkSession

from marketpipe.features.job import FeatureJob
from marketpipe.features.validate import validate
from marketpipe.local.stack import LocalStack
from marketpipe.objectstore import download_prefix, s3_client
from marketpipe.runtime import Readiness, read_readiness
from marketpipe.settings import FeaturesSettings, PostgresSettings, Settings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.migrations import migrate, progress_ddl, table_ddl
from marketpipe.sinks.tables import FEATURE_TABLES, PROGRESS_TABLE
from tests.duckdblock import duckdb_lock_held
from tests.integration.conftest import fresh_database, running_stack
from tests.integration.features.test_backfill_validate import (
    features_cfg,
    produce_history,
    wait_for,
)
from tests.integration.features.test_crash import assert_closed_windows_exported_once, committed
from tests.integration.features.test_job import produce, run_once, totals
from tests.integration.helpers import run_cli, service_env

US = 1_000_000
TICKS = 3000  # 150 s of market at 20 ticks/s: 6 micro-batches of 500
OUTAGE_S = 20.0


@pytest.fixture(scope="module")
def own_stack() -> Iterator[tuple[LocalStack, Settings]]:
    with running_stack(["postgres", "s3"]) as running:
        yield running


@pytest.fixture
def outage(
    settings: Settings, own_stack: tuple[LocalStack, Settings]
) -> Iterator[tuple[LocalStack, Settings]]:
    """The test's topics on the session's broker; PostgreSQL (a migrated database of the
    test's own) and S3 on the module's stack, running again afterwards whatever the test did."""
    stack, own = own_stack
    with fresh_database(own.postgres) as pg:
        try:
            migrate(pg.conninfo())
            yield stack, settings.model_copy(update={"postgres": pg, "s3": own.s3})
        finally:
            stack.up()


def on_postgres(s: Settings, tmp_path: Path, name: str, **extra: object) -> Settings:
    """``s`` running the job into PostgreSQL and cold Parquet, in small micro-batches, with
    short backoff (the defaults wait up to 10 s between attempts)."""
    values: dict[str, object] = {
        "sinks": ["postgres", "parquet"], "max_offsets_per_trigger": 500, "trigger_s": 0.5,
        "sink_retry_initial_s": 0.5, "sink_retry_max_s": 2.0, "sink_retry_give_up_s": 120.0,
        **extra,
    }  # fmt: skip
    return s.model_copy(update={"features": features_cfg(tmp_path, name, **values)})


def postgres_copy(pg: PostgresSettings) -> duckdb.DuckDBPyConnection:
    """PostgreSQL's hot tables copied into DuckDB (same DDL), for the checks of the DuckDB sink."""
    con = duckdb.connect()
    for statement in [*table_ddl(), progress_ddl()]:
        con.execute(statement)
    with psycopg.connect(pg.conninfo()) as conn:
        for table in [*(t.name for t in FEATURE_TABLES), PROGRESS_TABLE]:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table],
            ).fetchall()]  # fmt: skip
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            if rows:
                con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", rows)
    return con


def assert_nothing_lost_or_doubled(s: Settings, first: int, last: int, cold: Path) -> None:
    """Every closed window as the validator recomputes it from the archive; every tick archived
    once and in one bar per interval; no key twice in any hot table or cold dataset."""
    report = validate(s, first, last + US)
    assert report.ok, report.lines()
    assert report.ticks == TICKS
    assert all(c.compared > 0 for c in report.checks)
    hot = postgres_copy(s.postgres)
    try:
        trades = hot.execute("SELECT interval_seconds, sum(trades) FROM bars GROUP BY 1 ORDER BY 1")
        assert trades.fetchall() == [(1, TICKS), (60, TICKS)]
        for table in FEATURE_TABLES:
            key = ", ".join(table.key)
            counted = hot.execute(f"SELECT count(*), count(DISTINCT ({key})) FROM {table.name}")
            n, distinct = counted.fetchone()  # type: ignore[misc]
            assert n == distinct > 0, table.name
        assert_closed_windows_exported_once(cold, hot)
        for dataset, key in (("raw", "symbol, seq"), ("indicators", "symbol, window_start")):
            files = f"read_parquet('{cold}/{dataset}/*/*/*.parquet', hive_partitioning = true)"
            counted = hot.execute(f"SELECT count(*), count(DISTINCT ({key})) FROM {files}")
            n, distinct = counted.fetchone()  # type: ignore[misc]
            assert n == distinct > 0, dataset
            if dataset == "raw":
                assert n == TICKS
    finally:
        hot.close()


def run_through_outage(
    spark: SparkSession, s: Settings, stack: LocalStack, service: str
) -> tuple[list[str], float]:
    """Run the job on ``s``; once two micro-batches are in, stop ``service`` for OUTAGE_S,
    start it again and wait for the job to catch up. Returns the readiness states seen during
    the outage and the seconds from the restart to caught up."""
    cfg = s.features
    readiness = Readiness()
    sinks = FeatureSinks(cfg, s.postgres, s.s3)
    job = FeatureJob(spark, s.kafka, cfg, sinks, readiness)

    def caught_up() -> bool:
        assert not any(q.exception() for q in job.queries), job.failures  # the job lives on
        done = [job.metrics.input_rows[q] >= TICKS for q in ("features", "archive")]
        return all(done) and readiness.state == "ok"

    states = []
    try:
        job.start()
        wait_for(lambda: committed(Path(cfg.checkpoint_dir) / "features") >= 2)
        assert stack.stop_service(service)
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE_S:
            assert not caught_up(), "the outage came too late to prove anything"
            states.append(readiness.state)
            time.sleep(0.5)
        stack.up()
        back = time.monotonic()
        wait_for(caught_up, timeout_s=60)
        behind_s = time.monotonic() - back
    finally:
        failed = job.stop()
        sinks.close()
    assert failed == []
    return states, behind_s


def retries(caplog: pytest.LogCaptureFixture, sink: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "marketpipe.retry" and f": {sink} at " in r.getMessage()
    ]


@pytest.mark.faults  # about a minute each, more on a busy machine
@pytest.mark.parametrize(
    ("service", "sink", "writers"),
    [("postgres", "postgres", {"query features"}),
     ("s3", "parquet", {"query features", "query archive"})],  # both write to cold storage
)  # fmt: skip
def test_a_sink_down_20_s_mid_stream_is_waited_out(
    spark: SparkSession,
    outage: tuple[LocalStack, Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    service: str,
    sink: str,
    writers: set[str],
) -> None:
    stack, services = outage
    first, last = produce_history(services, TICKS, tps=20.0, seed=31)
    cold = tmp_path / "archive"
    root = f"s3://{services.s3.bucket}/cold-{uuid.uuid4().hex[:8]}" if service == "s3" else None
    s = on_postgres(services, tmp_path, f"{service}-down", archive_root=root or str(cold))
    with caplog.at_level(logging.INFO, logger="marketpipe.retry"):
        states, behind_s = run_through_outage(spark, s, stack, service)
    assert any(f"retrying: {sink} at " in st for st in states), states
    tried = retries(caplog, sink)
    assert len(tried) >= 3, tried
    assert {m.split(": ")[0] for m in tried} == writers
    print(f"{service} down {OUTAGE_S:.0f} s: {len(tried)} retries, caught up {behind_s:.1f} s "
          "after the restart")  # fmt: skip
    assert behind_s < 30
    if root:
        download_prefix(s3_client(s.s3), root, cold)
    assert_nothing_lost_or_doubled(s, first, last, cold)


def test_given_up_the_job_exits_1_in_one_line_and_a_restart_loses_and_doubles_nothing(
    spark: SparkSession, outage: tuple[LocalStack, Settings], tmp_path: Path
) -> None:
    stack, services = outage
    first, last = produce_history(services, TICKS, tps=20.0, seed=33)
    s = on_postgres(services, tmp_path, "give-up", sink_retry_give_up_s=8.0)
    health = tmp_path / "health"
    probed = s.model_copy(update={"health_file": str(health)})
    out, err = tmp_path / "features.out", tmp_path / "features.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketpipe", "features"], env=service_env(probed),
            stdout=stdout, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        checkpoint = Path(s.features.checkpoint_dir) / "features"
        wait_for(lambda: proc.poll() is not None or committed(checkpoint) >= 2)
        assert proc.poll() is None, err.read_text()[-3000:]
        stack.stop_service("postgres")
        wait_for(lambda: "retrying: postgres at" in (read_readiness(health) or ""), timeout_s=30)
        assert run_cli(probed, "health").returncode == 0  # alive: liveness leaves it be
        ready = run_cli(probed, "health", "--ready")
        assert ready.returncode == 1  # not ready while retrying
        assert ready.stderr.startswith("not ready: query features: retrying: postgres at ")
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = err.read_text()
    assert "Traceback" not in text
    assert "\tat " not in text  # no Java stack trace
    ours = [line for line in text.splitlines() if line.startswith("marketpipe features:")]
    assert ours == [text.splitlines()[-1]]  # one line, the last
    assert ours[0].startswith("marketpipe features: query features: gave up after 8 s of retrying")
    assert f"postgres at {s.postgres.host}:{s.postgres.port}/{s.postgres.database}" in ours[0]

    stack.up()
    run_once(spark, s, s.features)  # the restart: resumes from the checkpoint
    assert_nothing_lost_or_doubled(s, first, last, tmp_path / "archive")


def test_a_duckdb_file_locked_by_another_process_is_waited_for(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    per_symbol = produce(settings, 1500, seed=5)
    cfg = FeaturesSettings(
        checkpoint_dir=str(tmp_path / "cp"), duckdb_path=str(tmp_path / "f.duckdb"),
        archive_root="", sink_retry_initial_s=0.2, sink_retry_max_s=1.0,
    )  # fmt: skip
    readiness = Readiness()
    sinks = FeatureSinks(cfg)
    job = FeatureJob(spark, settings.kafka, cfg, sinks, readiness)
    try:
        with duckdb_lock_held(tmp_path / "f.duckdb"):
            job.start(available_now=True)
            wait_for(lambda: "Could not set lock" in readiness.state)
            assert readiness.state.startswith(
                f"query features: retrying: duckdb at {cfg.duckdb_path}"
            )
        job.await_all(120)
        assert job.stop() == []
    finally:
        sinks.close()
    assert readiness.state == "ok"
    assert totals(tmp_path / "f.duckdb")[0] == per_symbol


def test_a_permanent_sink_error_fails_the_query_at_once_in_one_line(
    spark: SparkSession, settings: Settings, database: Settings, tmp_path: Path
) -> None:
    produce(settings, 500, seed=6)
    cfg = FeaturesSettings(
        checkpoint_dir=str(tmp_path / "cp"), sinks=["postgres"], archive_root="",
        sink_retry_give_up_s=120.0,
    )  # fmt: skip
    sinks = FeatureSinks(cfg, database.postgres)  # a database never migrated
    job = FeatureJob(spark, settings.kafka, cfg, sinks)
    started = time.monotonic()
    try:
        (query,) = job.start(available_now=True)
        wait_for(lambda: not query.isActive)
        failed = job.stop()
    finally:
        sinks.close()
    assert time.monotonic() - started < 60  # not retried until the give-up time
    assert failed == ["features"]
    pg = database.postgres
    assert job.failure(query) == (
        f"query features failed: PostgreSQL {pg.host}:{pg.port}/{pg.database}: table "
        "feature_progress is missing: run `marketpipe db migrate`"
    )
