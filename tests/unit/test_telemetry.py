from __future__ import annotations

import pytest
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider

from marketpipe.settings import OtelSettings
from marketpipe.telemetry import ProducerInstruments, setup_telemetry


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
