"""Stream versus batch, validation against an independent recomputation, late data: the
features job, the backfill and the validator on the real broker, Spark and DuckDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
from pyspark.sql import SparkSession

from marketpipe.features.backfill import run_backfill
from marketpipe.features.job import FeatureJob
from marketpipe.features.validate import validate
from marketpipe.ingest.pacing import Pacer, wall_clock_us
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import FeaturesSettings, ProducerSettings, Settings
from marketpipe.sinks.hub import FeatureSinks
from tests.integration.features.test_job import run_once

US = 1_000_000


def produce_history(settings: Settings, n: int, tps: float, seed: int) -> tuple[int, int]:
    """``n`` ticks at once whose event times lie on a ``tps`` grid ending now (several
    minutes of market for the windows); returns the event-time range [first, last]."""
    cfg = ProducerSettings(symbol_count=3, tps=tps, count=n, seed=seed, batch_size=500)
    producer = SyntheticProducer(cfg, Publisher(settings.kafka), settings.kafka.topic_valid)
    start = wall_clock_us() - int(n / tps * US) - US
    producer.pacer = Pacer(tps, start_us=start)
    assert producer.run(StopFlag()).delivery.ok
    return start, start + int(n / tps * US)


def features_cfg(tmp_path: Path, name: str, **extra: object) -> FeaturesSettings:
    values: dict[str, object] = {
        "checkpoint_dir": str(tmp_path / f"cp-{name}"),
        "duckdb_path": str(tmp_path / f"{name}.duckdb"),
        "archive_root": str(tmp_path / "archive"),
        "max_offsets_per_trigger": 2000,
        "cold_trigger_s": 0.5,  # the tests watch the archive query's progress
        **extra,
    }
    return FeaturesSettings(**values)  # type: ignore[arg-type]


def rows(path: str, table: str, where: str = "true") -> list[tuple[object, ...]]:
    con = duckdb.connect(path, read_only=True)
    try:
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND column_name <> 'written_at' ORDER BY ordinal_position", [table]
        ).fetchall()]  # fmt: skip
        query = f"SELECT {', '.join(cols)} FROM {table} WHERE {where} ORDER BY ALL"
        return con.execute(query).fetchall()
    finally:
        con.close()


def assert_same_rows(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> None:
    """Equal keys and values; floats to 1e-12 relative (a streaming sum adds its partial
    aggregates in another order than a batch sum)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        for a, b in zip(g, w, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-12, abs=1e-15), (g, w)
            else:
                assert a == b, (g, w)


def test_stream_backfill_and_validator_agree_on_closed_windows(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    first, last = produce_history(settings, 4000, tps=20.0, seed=11)  # 200 s of market
    # The stream reads the archive's files (the other read path is the crash test's).
    stream_cfg = features_cfg(tmp_path, "stream", sinks=["duckdb", "parquet"], read_from="archive")
    stream = settings.model_copy(update={"features": stream_cfg})
    run_once(spark, settings, stream_cfg)

    # The validator recomputes from the archive with DuckDB: the stream's rows match.
    report = validate(stream, first, last + US)
    assert report.ok, report.lines()
    assert report.ticks == 4000
    assert [c.table for c in report.checks] == ["bars", "window_features", "indicators"]
    assert all(c.compared > 0 for c in report.checks)
    assert all(c.latency_s is not None for c in report.checks[:2])

    # The backfill over the same range, into its own store, gives the same closed windows.
    batch_cfg = features_cfg(tmp_path, "batch")
    batch = settings.model_copy(update={"features": batch_cfg})
    sinks = FeatureSinks(batch_cfg)
    try:
        start = (first // (60 * US) + 1) * 60 * US  # whole minutes, so 1-min bars line up
        done = run_backfill(spark, batch, sinks, start, last + US)
        again = run_backfill(spark, batch, sinks, start, last + US)  # idempotent
    finally:
        sinks.close()
    assert done.rows == again.rows
    assert done.rows["bars_1s"] > 0
    cutoff = report.cutoff
    assert cutoff is not None
    closed = f"window_start >= make_timestamp({start}) AND window_end <= '{cutoff.isoformat()}'"
    # And from the topic instead of the archive: the same rows again.
    topic_cfg = features_cfg(tmp_path, "from-topic")
    sinks = FeatureSinks(topic_cfg)
    try:
        from_topic = run_backfill(
            spark, settings.model_copy(update={"features": topic_cfg}), sinks,
            start, last + US, source="topic",
        )  # fmt: skip
    finally:
        sinks.close()
    assert from_topic.rows == done.rows
    for table in ("bars", "window_features"):
        streamed = rows(stream_cfg.duckdb_path, table, closed)
        assert streamed, table
        assert_same_rows(rows(batch_cfg.duckdb_path, table, closed), streamed)
        assert_same_rows(rows(topic_cfg.duckdb_path, table, closed), streamed)
    # Indicators: the stream continued each symbol from before the backfill's range, so compare
    # the backfill continued from the stream's own state: run it into the stream's store.
    # Only the minutes the stream has closed: the backfill also closes the range's last ones.
    stream_closed = f"window_start + INTERVAL 60 SECOND <= '{cutoff.isoformat()}'"
    before = rows(stream_cfg.duckdb_path, "indicators", stream_closed)
    assert len({r[0] for r in before}) == 3
    sinks = FeatureSinks(stream_cfg)
    try:
        run_backfill(spark, stream, sinks, start, last + US)
    finally:
        sinks.close()
    written = {(r[0], r[1]) for r in before}
    after = rows(stream_cfg.duckdb_path, "indicators", stream_closed)
    assert_same_rows([r for r in after if (r[0], r[1]) in written], before)
    assert validate(stream, first, last + US).ok

    # Cold Parquet: closed windows, once each.
    parquet = (
        duckdb.connect()
        .execute(
            f"SELECT count(*), count(DISTINCT (symbol, window_start)) FROM read_parquet("
            f"'{tmp_path}/archive/bars/*/*/*.parquet', hive_partitioning = true) "
            "WHERE interval_seconds = 60"
        )
        .fetchone()
    )
    assert parquet is not None
    assert parquet[0] == parquet[1] > 0


def test_validator_reports_missing_extra_and_differing_rows(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    first, last = produce_history(settings, 1500, tps=20.0, seed=12)
    cfg = features_cfg(tmp_path, "tampered")
    run_once(spark, settings, cfg)
    checked = settings.model_copy(update={"features": cfg})
    assert validate(checked, first, last + US).ok

    con = duckdb.connect(cfg.duckdb_path)
    victim = con.execute(
        "SELECT symbol, window_start FROM bars WHERE interval_seconds = 1 ORDER BY ALL LIMIT 2"
    ).fetchall()
    con.execute(
        "UPDATE bars SET close = close * 1.001 WHERE symbol = ? AND window_start = ? "
        "AND interval_seconds = 1", list(victim[0])
    )  # fmt: skip
    con.execute(
        "DELETE FROM bars WHERE symbol = ? AND window_start = ? AND interval_seconds = 1",
        list(victim[1]),
    )
    con.execute(
        "UPDATE indicators SET close = close + 1 WHERE (symbol, window_start) = "
        "(SELECT (symbol, window_start) FROM indicators ORDER BY ALL LIMIT 1)"
    )
    con.execute(
        "INSERT INTO bars SELECT symbol, 1, window_start - INTERVAL 1 DAY, window_end - "
        "INTERVAL 1 DAY, open, high, low, close, volume, trades, vwap, last_bid, last_ask, "
        "mean_spread, last_event_time, written_at FROM bars WHERE interval_seconds = 60 LIMIT 1"
    )
    con.close()
    day_before = first - 86_400 * US - 3_600 * US  # the planted row lies in range
    report = validate(checked, day_before, last + US)
    bars_check = next(c for c in report.checks if c.table == "bars")
    assert (bars_check.differing, bars_check.missing, bars_check.extra) == (1, 1, 1)
    ind_check = next(c for c in report.checks if c.table == "indicators")
    assert (ind_check.differing, ind_check.missing, ind_check.extra) == (1, 0, 0)
    assert not report.ok
    assert "MISMATCH" in report.lines()[-1]


def test_late_ticks_inside_the_watermark_count_beyond_it_are_dropped(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    cfg = features_cfg(tmp_path, "late", watermark_s=10.0, trigger_s=0.5, bar_intervals_s=[1],
                       idle_partition_s=1.0)  # fmt: skip
    # On a whole minute: which windows a late tick misses depends on where their ends fall.
    t0 = (wall_clock_us() // (60 * US) - 10) * 60 * US
    publisher = Publisher(settings.kafka)

    def tick(seq: int, at_us: int) -> bytes:
        return orjson.dumps(
            {"symbol": "LATE", "event_time": at_us, "seq": seq, "price": 100.0 + seq,
             "size": 1.0, "bid": 99.0, "ask": 101.0 + seq, "bid_size": None, "ask_size": None,
             "source": "test"}
        )  # fmt: skip

    def send(*ticks: bytes) -> None:
        publisher.publish(settings.kafka.topic_valid, [b"LATE"] * len(ticks), list(ticks))
        publisher.flush()

    sinks = FeatureSinks(cfg)
    job = FeatureJob(spark, settings.kafka, cfg, sinks)
    try:
        job.start()
        send(*(tick(i, t0 + i * US) for i in range(31)))  # t0 .. t0+30 s, in order
        wait_for(lambda: job.metrics.input_rows["archive"] >= 31)
        wait_for(lambda: job.metrics.input_rows["features"] >= 31)
        # The topic's other partitions bring nothing: they hold the watermark until idle.
        time.sleep(cfg.idle_partition_s + 2 * cfg.trigger_s)
        send(tick(31, t0 + 30 * US + US // 2))  # a batch after that moves it to t0+20.5 s
        wait_for(lambda: job.metrics.input_rows["features"] >= 32)
        time.sleep(2 * cfg.trigger_s)
        # t0+25.5 s is late but inside the watermark; t0+5.5 s is behind it.
        send(tick(32, t0 + 25 * US + US // 2), tick(33, t0 + 5 * US + US // 2))
        wait_for(lambda: job.metrics.input_rows["features"] >= 34)
        wait_for(lambda: job.metrics.input_rows["archive"] >= 34)
        assert job.stop() == []
    finally:
        sinks.close()
    assert job.metrics.late == 2
    # Spark counts window copies: the tick at t0+5.5 s lost its 1 s bar [5, 6) and its 10 s
    # bucket [0, 10) of the sliding windows (so it is in none of them); its 60 s bar (the
    # indicators' interval) was still open and took it.
    assert job.metrics.dropped["features"] == 2
    by_second = dict(
        duckdb.connect(cfg.duckdb_path, read_only=True)
        .execute(
            "SELECT epoch(window_start)::BIGINT, trades FROM bars WHERE symbol = 'LATE' "
            "AND interval_seconds = 1"
        )
        .fetchall()
    )
    assert by_second[(t0 + 25 * US) // US] == 2  # the in-time late tick joined its bar
    assert by_second[(t0 + 5 * US) // US] == 1  # the dropped one did not
    con = duckdb.connect(cfg.duckdb_path, read_only=True)
    window = con.execute(
        "SELECT ticks FROM window_features WHERE symbol = 'LATE' AND window_start = ?",
        [datetime.fromtimestamp(t0 / US, UTC)],
    ).fetchone()
    con.close()
    assert window == (33,)  # [t0, t0+60 s): the 32 in order and the in-time late one


def wait_for(condition: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the streaming job")
        time.sleep(0.2)
