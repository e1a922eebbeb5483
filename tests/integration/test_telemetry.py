"""Producer metrics as a collector would see them, from a real run against the real broker."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher
from marketpipe.runtime import StopFlag
from marketpipe.settings import ProducerSettings, Settings
from marketpipe.telemetry import ProducerInstruments


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def test_producer_metrics_count_every_acknowledged_tick(settings: Settings) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = ProducerInstruments.create(provider.get_meter("test"))
    attrs = {"topic": settings.kafka.topic_raw, "source": "synthetic"}
    publisher = Publisher(settings.kafka, instruments, attrs, stats_interval_ms=100)
    cfg = ProducerSettings(symbol_count=3, tps=4000, duration_s=1.5, seed=1)
    summary = SyntheticProducer(cfg, publisher, settings.kafka.topic_raw).run(StopFlag())

    points = collect(reader)
    (produced,) = points["marketpipe.ticks.produced"]
    assert produced.value == summary.delivery.delivered == summary.ticks
    assert dict(produced.attributes) == attrs
    (produced_bytes,) = points["marketpipe.bytes.produced"]
    assert produced_bytes.value == summary.delivery.delivered_bytes
    (latency,) = points["marketpipe.produce.latency"]
    assert latency.count >= 1
    assert 0 < latency.sum / latency.count < 5_000  # ms, and sane
    assert "marketpipe.delivery.errors" not in points  # nothing failed, nothing recorded
    provider.shutdown()
