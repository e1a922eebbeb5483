"""kill -9 of `marketpipe features` mid-stream (the whole process group, as when a pod dies),
then a restart: the checkpoints and idempotent sinks leave nothing lost and nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from marketpipe.ingest.readers import ReadOptions, read_file
from marketpipe.ingest.rows import Accounting
from marketpipe.settings import Settings
from tests.integration.features.test_backfill_validate import features_cfg, produce_history
from tests.integration.helpers import run_cli, service_env

US = 1_000_000


def committed(checkpoint: Path) -> int:
    commits = checkpoint / "commits"
    return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.exists() else 0


def assert_closed_windows_exported_once(root: Path, hot: duckdb.DuckDBPyConnection) -> None:
    """Cold Parquet holds every window the job closed exactly once, with the hot row's values:
    the exports of batches replayed after the crash rewrote their files. ``hot`` holds the hot
    store's tables (the DuckDB sink's file, or a copy of PostgreSQL's)."""
    (exported_to,) = hot.execute("SELECT max(exported_to_us) FROM feature_progress").fetchone()  # type: ignore[misc]
    assert exported_to is not None
    upto = f"window_end <= make_timestamp({exported_to})"
    for table, key in (
        ("bars", "symbol, interval_seconds, window_start"),
        ("window_features", "symbol, window_start, window_end"),
    ):
        cold = f"read_parquet('{root}/{table}/*/*/*.parquet', hive_partitioning = true)"
        n, distinct = hot.execute(
            f"SELECT count(*), count(DISTINCT ({key})) FROM {cold}"
        ).fetchone()  # type: ignore[misc]
        assert n == distinct > 0, table  # once each
        cols = [c for (c,) in hot.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND column_name <> 'written_at' ORDER BY ordinal_position", [table]
        ).fetchall()]  # fmt: skip
        select = ", ".join(cols)
        hot_rows = hot.execute(f"SELECT {select} FROM {table} WHERE {upto} ORDER BY ALL").fetchall()
        cold_rows = hot.execute(f"SELECT {select} FROM {cold} ORDER BY ALL").fetchall()
        assert cold_rows == hot_rows, table  # every closed window, as the hot store has it


def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    first, last = produce_history(settings, 3000, tps=20.0, seed=21)  # 150 s of market
    archive = tmp_path / "jvm" / "classes.jsa"
    cfg = features_cfg(
        tmp_path, "crash", max_offsets_per_trigger=250, trigger_s=0.5,
        sinks=["duckdb", "parquet"], class_archive=str(archive),
    )  # fmt: skip
    crashing = settings.model_copy(update={"features": cfg})
    log = (tmp_path / "features.log").open("w")  # a pipe nobody reads would fill and block
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketpipe", "features"],
        env=service_env(crashing), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    cp = Path(cfg.checkpoint_dir)
    try:
        deadline = time.monotonic() + 180
        while min(committed(cp / "features"), committed(cp / "archive")) < 3:
            assert proc.poll() is None, (tmp_path / "features.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "features.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # driver, JVM and Python workers at once
        proc.wait()
        log.close()
    assert committed(cp / "features") < 3000 / 250, "killed too late to prove anything"

    # A JVM killed mid-run never leaves a (partial) class-data archive where others map it.
    assert not archive.exists()
    restarted = run_cli(crashing, "features", "--available-now", timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    # The clean exit wrote it, whole, then renamed it into place.
    assert archive.stat().st_size > 10_000_000
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]

    con = duckdb.connect(cfg.duckdb_path, read_only=True)
    try:
        trades = con.execute(
            "SELECT interval_seconds, sum(trades) FROM bars GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert trades == [(1, 3000), (60, 3000)]  # every tick in exactly one bar per interval

    acc = Accounting()
    archived = sum(
        len(c.seq or []) for c in read_file(tmp_path / "archive" / "raw", ReadOptions(), acc)
    )
    assert archived == 3000  # a replayed batch rewrote its files rather than adding more

    checked = run_cli(crashing, "validate", "--start", str(first), "--end", str(last + US))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verdict: OK" in checked.stdout
    hot = duckdb.connect(cfg.duckdb_path, read_only=True)
    try:
        assert_closed_windows_exported_once(tmp_path / "archive", hot)
    finally:
        hot.close()

    # Switching the read path keeps checkpoints apart: the archive path starts its own, re-reads
    # every archived tick, and the upserts leave the same rows.
    switched = settings.model_copy(
        update={"features": cfg.model_copy(update={"read_from": "archive"})}
    )
    again = run_cli(switched, "features", "--available-now", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    con = duckdb.connect(cfg.duckdb_path, read_only=True)
    try:
        assert (
            trades
            == con.execute(
                "SELECT interval_seconds, sum(trades) FROM bars GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
    finally:
        con.close()
