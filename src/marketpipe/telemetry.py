"""OpenTelemetry metrics and logging, set up in one place.

With ``exporter=none`` the API's no-op meter is used: instruments exist but record nothing, and
hot loops only touch them once per batch, so telemetry off costs nothing measurable.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, NoOpMeterProvider

from marketpipe.settings import OtelSettings

log = logging.getLogger(__name__)

METER_NAME = "marketpipe"


@dataclass
class Telemetry:
    """The meter every component records to; ``shutdown`` flushes pending exports."""

    meter: Meter
    provider: MeterProvider = field(repr=False)

    def shutdown(self) -> None:
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # py4j logs every callback from the JVM (each foreachBatch call) at INFO.
    logging.getLogger("py4j").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if level != "DEBUG":
        logging.getLogger("py4j.clientserver").addFilter(_no_callback_tracebacks)


def _no_callback_tracebacks(record: logging.LogRecord) -> bool:
    """py4j logs the traceback of every exception a foreachBatch function raises; the features
    job reports a failed query in one line itself (and the traceback at DEBUG)."""
    return not record.getMessage().startswith(
        "There was an exception while executing the Python Proxy"
    )


def setup_telemetry(cfg: OtelSettings, service: str) -> Telemetry:
    """Build a MeterProvider for ``service`` with the configured exporter."""
    if cfg.exporter == "none":
        provider: MeterProvider = NoOpMeterProvider()
        return Telemetry(meter=provider.get_meter(METER_NAME), provider=provider)

    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    exporter: MetricExporter
    if cfg.exporter == "console":
        exporter = ConsoleMetricExporter(out=sys.stderr)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise RuntimeError(
                "MARKETPIPE_OTEL__EXPORTER=otlp needs the otlp extra: "
                "pip install 'marketpipe[otlp]'"
            ) from exc
        endpoint = f"{cfg.endpoint.rstrip('/')}/v1/metrics" if cfg.endpoint else None
        exporter = OTLPMetricExporter(endpoint=endpoint)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=cfg.export_interval_ms)
    resource = Resource.create({"service.name": f"{cfg.service_name}-{service}"})
    sdk_provider = SdkMeterProvider(metric_readers=[reader], resource=resource)
    metrics.set_meter_provider(sdk_provider)
    log.info("metrics export: %s every %d ms", cfg.exporter, cfg.export_interval_ms)
    return Telemetry(meter=sdk_provider.get_meter(METER_NAME), provider=sdk_provider)


@dataclass
class ProducerInstruments:
    """What a publishing service reports: ticks, bytes, delivery errors, produce latency."""

    produced: Counter
    produced_bytes: Counter
    delivery_errors: Counter
    produce_latency: Histogram

    @classmethod
    def create(cls, meter: Meter) -> ProducerInstruments:
        return cls(
            produced=meter.create_counter(
                "marketpipe.ticks.produced", unit="{tick}", description="Messages acknowledged"
            ),
            produced_bytes=meter.create_counter(
                "marketpipe.bytes.produced",
                unit="By",
                description="Payload bytes handed to the client, less failed deliveries",
            ),
            delivery_errors=meter.create_counter(
                "marketpipe.delivery.errors", unit="{message}", description="Messages not delivered"
            ),
            produce_latency=meter.create_histogram(
                "marketpipe.produce.latency",
                unit="ms",
                description="produce() to broker acknowledgement, sampled",
            ),
        )


@dataclass
class QualityInstruments:
    """The quality checker's accounting: consumed = valid + dlq, reasons, gaps, lag."""

    consumed: Counter
    valid: Counter
    dlq: Counter
    reasons: Counter
    gaps: Counter
    lag: Histogram

    @classmethod
    def create(cls, meter: Meter) -> QualityInstruments:
        return cls(
            consumed=meter.create_counter(
                "marketpipe.quality.consumed", unit="{message}", description="Messages checked"
            ),
            valid=meter.create_counter(
                "marketpipe.quality.valid", unit="{message}", description="Forwarded as valid"
            ),
            dlq=meter.create_counter(
                "marketpipe.quality.dlq", unit="{message}", description="Sent to the DLQ"
            ),
            reasons=meter.create_counter(
                "marketpipe.quality.reasons",
                unit="{violation}",
                description="Rule violations by reason (a message can have several)",
            ),
            gaps=meter.create_counter(
                "marketpipe.quality.gap_ticks",
                unit="{tick}",
                description="Sequence numbers found missing",
            ),
            lag=meter.create_histogram(
                "marketpipe.quality.lag",
                unit="{message}",
                description="Consumer lag over assigned partitions, sampled",
            ),
        )
