from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request

import pytest
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

from marketpipe.local.process import free_port
from marketpipe.runtime import Readiness, StopFlag
from marketpipe.settings import ConfigError, OtelSettings, Settings
from marketpipe.telemetry import (
    FeatureInstruments,
    ProducerInstruments,
    QualityInstruments,
    setup_logging,
    setup_telemetry,
)


def test_none_exporter_is_the_no_op_meter() -> None:
    telemetry = setup_telemetry(OtelSettings(exporter="none"), "producer")
    assert isinstance(telemetry.meter, NoOpMeter)
    inst = ProducerInstruments.create(telemetry.meter)
    inst.produced.add(5)  # accepted and ignored
    telemetry.shutdown()


def test_console_exporter_prints_the_instruments(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = setup_telemetry(
        OtelSettings(exporter="console", export_interval_ms=60_000), "producer"
    )
    assert isinstance(telemetry.provider, MeterProvider)
    inst = ProducerInstruments.create(telemetry.meter)
    inst.produced.add(7, {"topic": "t"})
    inst.produce_latency.record(3.5, {"topic": "t"})
    telemetry.shutdown()  # flushes one export
    out = capsys.readouterr().err
    assert "marketpipe.ticks.produced" in out
    assert "marketpipe.produce.latency" in out
    assert "marketpipe-producer" in out  # service.name resource


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus text page: ``name{labels}`` -> value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name + _labels(sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


def test_the_metrics_port_serves_the_instruments_in_prometheus_names() -> None:
    telemetry = setup_telemetry(
        OtelSettings(metrics_port=free_port(), metrics_address="127.0.0.1"), "quality"
    )
    try:
        assert telemetry.endpoint is not None
        inst = QualityInstruments.create(telemetry.meter)
        inst.consumed.add(10)
        inst.valid.add(9)
        inst.dlq.add(1)
        inst.reasons.add(1, {"reason": "crossed_quote"})
        inst.transactions.add(2, {"outcome": "committed"})
        inst.lag.set(7, {"partition": "0"})
        stop = StopFlag()
        stop.is_set()  # a loop turned
        readiness = Readiness()
        readiness.not_ready("consumer", "retrying: broker down")
        telemetry.watch(stop, readiness)
        got = scrape(telemetry.endpoint)
        assert got["marketpipe_quality_consumed_total"] == 10
        assert got["marketpipe_quality_valid_total"] == 9
        assert got["marketpipe_quality_dlq_total"] == 1
        assert got['marketpipe_quality_reasons_total{reason="crossed_quote"}'] == 1
        assert got['marketpipe_quality_transactions_total{outcome="committed"}'] == 2
        assert got['marketpipe_quality_lag{partition="0"}'] == 7
        assert got["marketpipe_ready"] == 0
        assert abs(got["marketpipe_heartbeat_timestamp_seconds"] - time.time()) < 60
        assert got["process_start_time_seconds"] > 0  # restarts show as a new start time
        readiness.ready("consumer")
        assert scrape(telemetry.endpoint)["marketpipe_ready"] == 1
    finally:
        telemetry.shutdown()


def test_latency_histograms_have_buckets_in_seconds() -> None:
    telemetry = setup_telemetry(
        OtelSettings(metrics_port=free_port(), metrics_address="127.0.0.1"), "features"
    )
    try:
        assert telemetry.endpoint is not None
        inst = FeatureInstruments.create(telemetry.meter)
        for value in (0.3, 0.7, 4.0):
            inst.latency.record(value, {"output": "bars_1s"})
        got = scrape(telemetry.endpoint)
        bucket = 'marketpipe_features_latency_seconds_bucket{le="%s",output="bars_1s"}'
        assert got[bucket % "0.5"] == 1
        assert got[bucket % "1.0"] == 2
        assert got[bucket % "5.0"] == 3
        assert got['marketpipe_features_latency_seconds_count{output="bars_1s"}'] == 3
    finally:
        telemetry.shutdown()


def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            setup_telemetry(OtelSettings(metrics_port=port, metrics_address="127.0.0.1"), "x")
    message = str(caught.value)
    assert message.startswith(f"MARKETPIPE_OTEL__METRICS_PORT={port}: cannot serve metrics")
    assert "\n" not in message


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    root.handlers.clear()
    try:
        setup_logging("INFO", "json")
        logging.getLogger("marketpipe.test").info("hello %s", "world")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("marketpipe.test").exception("failed")
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])
    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines if line.startswith("{"))
    assert first["message"] == "hello world"
    assert (first["level"], first["logger"]) == ("INFO", "marketpipe.test")
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]
    assert len([line for line in lines if line.startswith("{")]) == 2  # a traceback stays inside


def test_text_logs_stay_the_default() -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]
