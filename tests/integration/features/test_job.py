"""The streaming features job end to end: broker -> Spark -> DuckDB, restart without doubles."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from marketpipe.features.job import FeatureJob
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.ingest.readers import ReadOptions, read_file
from marketpipe.ingest.rows import Accounting
from marketpipe.kafka import Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import FeaturesSettings, ProducerSettings, Settings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.parquet import read_archive


def produce(settings: Settings, n: int, seed: int) -> dict[str, int]:
    cfg = ProducerSettings(symbol_count=3, tps=0, count=n, seed=seed, batch_size=500)
    summary = SyntheticProducer(cfg, Publisher(settings.kafka), settings.kafka.topic_valid).run(
        StopFlag()
    )
    assert summary.delivery.ok
    return summary.per_symbol


def run_once(spark: SparkSession, settings: Settings, cfg: FeaturesSettings) -> FeatureJob:
    """One bounded run of every query of the job (what `features --available-now` does)."""
    sinks = FeatureSinks(cfg, settings.postgres, settings.s3)
    job = FeatureJob(spark, settings.kafka, cfg, sinks)
    try:
        job.start(available_now=True)
        job.await_all(180)
        assert job.stop() == []
    finally:
        sinks.close()
    return job


def totals(path: Path) -> tuple[dict[str, int], int, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        per_symbol = dict(
            con.execute(
                "SELECT symbol, sum(trades) FROM bars WHERE interval_seconds = 1 GROUP BY symbol"
            ).fetchall()
        )
        minute = con.execute("SELECT sum(trades) FROM bars WHERE interval_seconds = 60").fetchone()
        windows = con.execute("SELECT count(*) FROM window_features").fetchone()
    finally:
        con.close()
    return {k: int(v) for k, v in per_symbol.items()}, int(minute[0] or 0), int(windows[0])  # type: ignore[index]


def test_stream_to_duckdb_and_restart_without_doubles(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    cfg = FeaturesSettings(
        checkpoint_dir=str(tmp_path / "cp"), duckdb_path=str(tmp_path / "f.duckdb"),
        archive_root="", max_offsets_per_trigger=1500,
    )  # fmt: skip
    first = produce(settings, 3000, seed=1)
    run_once(spark, settings, cfg)
    per_symbol, minute, windows = totals(tmp_path / "f.duckdb")
    assert per_symbol == first  # every tick in exactly one 1 s bar
    assert minute == 3000
    assert windows > 0

    run_once(spark, settings, cfg)  # restart, nothing new: nothing changes
    assert totals(tmp_path / "f.duckdb") == (per_symbol, minute, windows)

    second = produce(settings, 1000, seed=2)
    run_once(spark, settings, cfg)
    per_symbol, minute, _ = totals(tmp_path / "f.duckdb")
    assert per_symbol == {s: first.get(s, 0) + second.get(s, 0) for s in first | second}
    assert minute == 4000


def test_valid_ticks_are_archived_once_and_read_back_by_the_replay_loader(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    cfg = FeaturesSettings(
        checkpoint_dir=str(tmp_path / "cp"), archive_root=str(tmp_path / "archive"),
        duckdb_path=str(tmp_path / "f.duckdb"), max_offsets_per_trigger=700,
    )  # fmt: skip
    produced_us = time.time_ns() // 1000
    per_symbol = produce(settings, 2000, seed=4)
    jobs = [run_once(spark, settings, cfg) for _ in range(2)]  # the second resumes: no rewrite
    # The synthetic feed's receipt times are archived, and give the feed latency figure.
    archived = read_archive(cfg.archive_root, None, produced_us - 60_000_000, 2 * produced_us)
    assert archived.num_rows == 2000
    assert pc.min(archived.column("received_at")).as_py() >= produced_us
    feed = jobs[0].metrics.as_dict()["feed_latency_s"]
    assert isinstance(feed, dict)
    assert feed["ticks"] == 2000
    acc = Accounting()
    seen: dict[str, list[int]] = {}
    for chunk in read_file(tmp_path / "archive" / "raw", ReadOptions(), acc):
        for symbol, seq in zip(chunk.columns.symbol, chunk.seq or [], strict=True):
            seen.setdefault(symbol, []).append(seq)
    assert {s: len(q) for s, q in seen.items()} == per_symbol
    assert all(sorted(q) == list(range(1, len(q) + 1)) for q in seen.values())
    assert acc.rejected == {}
