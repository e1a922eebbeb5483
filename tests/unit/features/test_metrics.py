"""The features job's metrics: what a progress report and a batch's rows become (no Spark
session: progress reports are built from the JSON Spark itself produces)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pyspark.sql.streaming.listener import QueryProgressEvent, StreamingQueryProgress

from marketpipe.features.metrics import (
    FEED_SAMPLE,
    Batch,
    JobMetrics,
    kafka_offsets,
    watermark_delay_s,
)
from marketpipe.telemetry import FeatureInstruments


def progress(
    name: str, rows: int, end: str, watermark: str, dropped: int = 0
) -> QueryProgressEvent:
    report = {
        "id": str(uuid.uuid4()), "runId": str(uuid.uuid4()), "name": name,
        "timestamp": "2026-11-29T10:00:00.000Z", "batchId": 3, "batchDuration": 1500,
        "durationMs": {"triggerExecution": 1500, "addBatch": 1200},
        "eventTime": {"watermark": watermark},
        "stateOperators": [{
            "operatorName": "stateStoreSave", "numRowsTotal": 120, "numRowsUpdated": 10,
            "allUpdatesTimeMs": 1, "numRowsRemoved": 0, "allRemovalsTimeMs": 0,
            "commitTimeMs": 1, "memoryUsedBytes": 4096, "numRowsDroppedByWatermark": dropped,
            "numShufflePartitions": 2, "numStateStoreInstances": 2, "customMetrics": {},
        }],
        "sources": [{
            "description": "marketpipe-kafka", "startOffset": None, "endOffset": end,
            "latestOffset": None, "numInputRows": rows, "inputRowsPerSecond": 0.0,
            "processedRowsPerSecond": 2000.0, "metrics": {},
        }],
        "sink": {"description": "ForeachBatchSink", "numOutputRows": -1, "metrics": {}},
        "numInputRows": rows, "inputRowsPerSecond": 0.0, "processedRowsPerSecond": 2000.0,
    }  # fmt: skip
    return QueryProgressEvent(StreamingQueryProgress.fromJson(report))


def points(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    value = getattr(p, "value", None)
                    key = tuple(sorted((k, str(v)) for k, v in p.attributes.items()))
                    out.setdefault(metric.name, {})[key] = (
                        value if value is not None else p.count  # histograms: their count
                    )
    return out


def test_a_progress_report_becomes_the_live_metrics() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seen: list[dict[str, int]] = []

    def backlog(end: dict[str, int]) -> int:
        seen.append(end)
        return 42

    metrics = JobMetrics(FeatureInstruments.create(provider.get_meter("t")), backlog)
    watermark = (datetime.now(UTC) - timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    metrics.onQueryProgress(progress("features", 3000, '{"0": 10, "1": 20}', watermark, 5))
    metrics.onQueryProgress(progress("features", 1000, '{"0": 15, "1": 25}', watermark))
    got = points(reader)
    q = (("query", "features"),)
    assert got["marketpipe.features.input"][q] == 4000
    assert got["marketpipe.features.input.rate"][q] == pytest.approx(1000 / 1.5)  # the last
    assert got["marketpipe.features.batch.duration"][q] == 2  # a histogram: two batches
    assert got["marketpipe.features.state.rows"][q] == 120
    assert got["marketpipe.features.state.memory"][q] == 4096
    assert got["marketpipe.features.watermark.dropped"][q] == 5
    assert got["marketpipe.features.source.lag"][q] == 42
    assert seen[-1] == {"0": 15, "1": 25}
    assert metrics.input_rows["features"] == 4000  # the exit report counts the same
    assert metrics.dropped["features"] == 5


def test_rows_written_and_their_latency_per_output() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = JobMetrics(FeatureInstruments.create(provider.get_meter("t")))
    now = datetime(2026, 11, 29, 10, 0, 5, tzinfo=UTC)
    rows = pa.table({
        "written_at": pa.array([now, now], pa.timestamp("us", tz="UTC")),
        "last_event_time": pa.array([now - timedelta(seconds=1), now - timedelta(seconds=3)],
                                    pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    metrics.wrote("bars_1s", rows)
    metrics.count_late(pa.chunked_array([pa.array([100, 200], pa.int64())]))
    metrics.count_late(pa.chunked_array([pa.array([150, 250, 50], pa.int64())]))
    got = points(reader)
    assert got["marketpipe.features.rows.written"][(("output", "bars_1s"),)] == 2
    assert got["marketpipe.features.latency"][(("output", "bars_1s"),)] == 2
    assert metrics.percentiles()["bars_1s"] == (2.0, 2.98)
    assert got["marketpipe.features.late_ticks"][()] == 2  # 150 and 50: older than 200
    assert metrics.late == 2
    # The exit summary as JSON (--output json) says the same.
    summary = metrics.as_dict()
    assert summary["rows_written"] == {"bars_1s": 2}
    assert summary["late_ticks"] == 2
    assert summary["latency_s"] == {"bars_1s": {"p50": 2.0, "p99": 2.98}}


def test_feed_latency_from_the_ticks_that_carry_a_receipt_time() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = JobMetrics(FeatureInstruments.create(provider.get_meter("t")))
    s = 1_000_000
    event = pa.chunked_array([pa.array([10 * s, 20 * s, 30 * s, 40 * s], pa.int64())])
    received = pa.chunked_array([pa.array([10 * s + s // 2, None, 31 * s, 42 * s], pa.int64())])
    skewed = pa.chunked_array([pa.array([5 * s - 1], pa.int64())])  # receiver's clock behind
    metrics.count_received(skewed, pa.chunked_array([pa.array([5 * s], pa.int64())]))
    metrics.count_received(received, event)
    replayed = pa.chunked_array([pa.nulls(3, pa.int64())])  # a replay: no receipt times
    metrics.count_received(replayed, pa.chunked_array([pa.array([1, 2, 3], pa.int64())]))
    assert metrics.as_dict()["feed_latency_s"] == {
        "p50": 0.75, "p99": pytest.approx(1.97), "ticks": 4
    }  # fmt: skip
    assert points(reader)["marketpipe.features.feed.latency"][()] == 4
    assert min(metrics.feed_s) == 0.0
    assert any(
        line.startswith("feed latency: p50 0.750 s, p99 1.970 s") for line in metrics.lines()
    )
    # A batch far larger than the sample: every tick counted, up to FEED_SAMPLE kept per batch.
    many = pa.chunked_array([pa.array(range(100_000), pa.int64())])
    metrics.count_received(pc.add(many, 2 * s), many)
    assert metrics.feed_ticks == 100_004
    assert len(metrics.feed_s) == 4 + FEED_SAMPLE


def test_no_feed_latency_line_without_receipt_times() -> None:
    metrics = JobMetrics()
    metrics.count_received(pa.chunked_array([pa.nulls(2, pa.int64())]),
                           pa.chunked_array([pa.array([1, 2], pa.int64())]))  # fmt: skip
    assert metrics.as_dict()["feed_latency_s"] is None
    assert not [line for line in metrics.lines() if "feed latency" in line]


def test_kafka_offsets_from_either_source() -> None:
    assert kafka_offsets('{"0": 5, "1": 7}') == {"0": 5, "1": 7}
    assert kafka_offsets('{"ticks.valid": {"0": 5}}') == {"0": 5}  # Spark's connector
    assert kafka_offsets('{"logOffset": 3}') is None  # the archive's file source
    assert kafka_offsets(None) is None
    assert kafka_offsets("not json") is None
    assert kafka_offsets("[]") is None


def test_the_ticks_the_driver_collected_are_the_input_not_sparks_rows() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = JobMetrics(FeatureInstruments.create(provider.get_meter("t")))
    metrics.collected("features", 3, 6000)  # Spark's rows: the batch's 2 offset ranges
    metrics.onQueryProgress(progress("features", 2, '{"0": 10, "1": 20}', ""))
    got = points(reader)
    q = (("query", "features"),)
    assert got["marketpipe.features.input"][q] == 6000
    assert got["marketpipe.features.input.rate"][q] == 4000  # over triggerExecution's 1.5 s
    assert metrics.input_rows["features"] == 6000
    assert list(metrics.batches) == [Batch("features", 3, 6000, 1.5)]


def test_no_watermark_delay_before_the_first_watermark() -> None:
    assert watermark_delay_s(None, 1e9) is None
    assert watermark_delay_s(0, 1e9) is None
    assert watermark_delay_s(10**15, 1e9 + 10) == 10  # 1e9 s
    assert watermark_delay_s(10**15 + 10**6, 1e9) == 0  # a watermark ahead of the clock


def test_the_jobs_own_windows_become_metrics() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = JobMetrics(FeatureInstruments.create(provider.get_meter("t")))
    watermark_us = int((datetime.now(UTC) - timedelta(seconds=12)).timestamp() * 1e6)
    metrics.windows("features", 3, 120, 4096, watermark_us)
    metrics.windows("features", 2, 100, 2048, watermark_us)
    got = points(reader)
    q = (("query", "features"),)
    assert got["marketpipe.features.watermark.dropped"][q] == 5
    assert got["marketpipe.features.state.rows"][q] == 100
    assert got["marketpipe.features.state.memory"][q] == 2048
    assert 11 <= got["marketpipe.features.watermark.delay"][q] <= 20
    assert metrics.dropped["features"] == 5


def test_a_query_falling_behind_says_so_in_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(float(t) for t in range(0, 600, 5))
    monkeypatch.setattr("marketpipe.features.metrics.time.monotonic", lambda: next(clock))
    lags = iter(range(20_000, 200_000, 2_000))
    metrics = JobMetrics(FeatureInstruments.create(MeterProvider().get_meter("t")),
                         lambda end: next(lags))  # fmt: skip
    watermark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with caplog.at_level(logging.WARNING, logger="marketpipe.features.metrics"):
        for _ in range(10):
            metrics.onQueryProgress(progress("features", 100, '{"0": 1}', watermark))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(
        "features query features falling behind: lag 30,000 (+10,000 in 25 s, 400/s"
    )
