"""OpenTelemetry metrics and logging, set up in one place.

Metrics are pushed (``MARKETPIPE_OTEL__EXPORTER``: console, OTLP) and/or served in Prometheus
text format (``MARKETPIPE_OTEL__METRICS_PORT``) through the SDK's Prometheus reader, which names
them the Prometheus way: ``marketpipe.quality.valid`` (unit ``{message}``) is scraped as
``marketpipe_quality_valid_total``, a histogram in ``s`` as ``..._seconds``. Labels are bounded
(reason, partition, query, output, outcome): never a symbol. With neither, the API's no-op
meter is used: instruments exist but record nothing, and hot loops only touch them once per
batch, so telemetry off costs nothing measurable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
    _Gauge,
)

from marketpipe.runtime import Readiness, StopFlag
from marketpipe.settings import ConfigError, OtelSettings

log = logging.getLogger(__name__)

METER_NAME = "marketpipe"
#: Histogram buckets: seconds (event time -> row latency, micro-batch durations) and
#: milliseconds (produce -> acknowledgement).
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
MS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)


@dataclass
class Telemetry:
    """The meter every component records to; ``shutdown`` flushes pending exports and stops
    the metrics endpoint. ``endpoint`` is the ``/metrics`` URL when one is served."""

    meter: Meter
    provider: MeterProvider = field(repr=False)
    endpoint: str | None = None
    server: Any = field(default=None, repr=False)

    def shutdown(self) -> None:
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def watch(self, stop: StopFlag, readiness: Readiness) -> None:
        """Gauges of the stage itself, read at each scrape: when its main loop last turned
        (unix seconds: the heartbeat) and whether it is ready (1) or retrying (0)."""
        self.meter.create_observable_gauge(
            "marketpipe.heartbeat.timestamp", [_observe(lambda: stop.last_turn_unix)],
            unit="s", description="When the stage's main loop last turned (unix time)",
        )  # fmt: skip
        self.meter.create_observable_gauge(
            "marketpipe.ready", [_observe(lambda: float(readiness.is_ready))],
            description="1 while the stage does useful work, 0 while it retries",
        )  # fmt: skip


def _observe(read: Callable[[], float | None]) -> Callable[[CallbackOptions], list[Observation]]:
    def callback(_options: CallbackOptions) -> list[Observation]:
        value = read()
        return [] if value is None else [Observation(value)]

    return callback


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
    and ``exception`` when there is one; what Loki and ELK parse without a pattern. Written
    here (a few lines over orjson, already a dependency) rather than adding a package for it."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Logging to stderr in ``fmt`` (``text`` or ``json``, MARKETPIPE_LOG_FORMAT)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
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
    """A MeterProvider for ``service``: its instruments pushed by the configured exporter
    and/or served in Prometheus text format on ``cfg.metrics_port`` (with the process's own
    CPU, memory and start time); with neither, a no-op meter."""
    if cfg.exporter == "none" and not cfg.metrics_port:
        provider: MeterProvider = NoOpMeterProvider()
        return Telemetry(meter=provider.get_meter(METER_NAME), provider=provider)

    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    server, endpoint = None, None
    if cfg.metrics_port:
        reader, server = _prometheus(cfg)
        readers.append(reader)
        endpoint = f"http://{cfg.metrics_address}:{server.server_port}/metrics"
        log.info("metrics: Prometheus text format at %s", endpoint)
    if cfg.exporter != "none":
        readers.append(
            PeriodicExportingMetricReader(
                _push_exporter(cfg), export_interval_millis=cfg.export_interval_ms
            )
        )
        log.info("metrics export: %s every %d ms", cfg.exporter, cfg.export_interval_ms)
    resource = Resource.create({"service.name": f"{cfg.service_name}-{service}"})
    sdk_provider = SdkMeterProvider(metric_readers=readers, resource=resource, views=_views())
    metrics.set_meter_provider(sdk_provider)
    return Telemetry(sdk_provider.get_meter(METER_NAME), sdk_provider, endpoint, server)


def _prometheus(cfg: OtelSettings) -> tuple[Any, Any]:
    """A Prometheus reader on a registry of its own (with the process collector), served by
    prometheus_client's HTTP server in a daemon thread: (reader, server)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    try:
        server, _thread = start_http_server(cfg.metrics_port, cfg.metrics_address, registry)
    except OSError as exc:
        raise ConfigError(
            f"MARKETPIPE_OTEL__METRICS_PORT={cfg.metrics_port}: cannot serve metrics on "
            f"{cfg.metrics_address}:{cfg.metrics_port} ({exc.strerror or exc}); pick a free "
            "port, or 0 to turn the endpoint off"
        ) from None
    return PrometheusMetricReader(scope_info_enabled=False, registry=registry), server


def _push_exporter(cfg: OtelSettings) -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    if cfg.exporter == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            "MARKETPIPE_OTEL__EXPORTER=otlp needs the otlp extra: pip install 'marketpipe[otlp]'"
        ) from exc
    endpoint = f"{cfg.endpoint.rstrip('/')}/v1/metrics" if cfg.endpoint else None
    return OTLPMetricExporter(endpoint=endpoint)


def _views() -> list[Any]:
    """Histogram buckets that fit what each histogram measures (the SDK's defaults are for
    milliseconds of HTTP latency)."""
    from opentelemetry.sdk.metrics import Histogram as SdkHistogram
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    return [
        View(instrument_type=SdkHistogram, instrument_unit=unit,
             aggregation=ExplicitBucketHistogramAggregation(buckets))
        for unit, buckets in (("s", SECONDS_BUCKETS), ("ms", MS_BUCKETS))
    ]  # fmt: skip


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
    """The quality checker's accounting: consumed = valid + dlq, reasons, gaps, transactions,
    and the lag (end offset - committed offset) per partition."""

    consumed: Counter
    valid: Counter
    dlq: Counter
    reasons: Counter
    gaps: Counter
    transactions: Counter
    lag: _Gauge

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
            transactions=meter.create_counter(
                "marketpipe.quality.transactions",
                unit="{transaction}",
                description="Batches by outcome: committed, or aborted (and redone)",
            ),
            lag=meter.create_gauge(
                "marketpipe.quality.lag",
                unit="{message}",
                description="Per partition of ticks.raw: end offset - committed offset",
            ),
        )


@dataclass
class FeatureInstruments:
    """The features job, per micro-batch: input, rate, batch duration, state, watermark,
    rows written and event time -> row latency per output, late ticks, source lag."""

    input: Counter
    input_rate: _Gauge
    batch_duration: Histogram
    state_rows: _Gauge
    state_memory: _Gauge
    watermark_dropped: Counter
    watermark_delay: _Gauge
    source_lag: _Gauge
    rows_written: Counter
    latency: Histogram
    feed_latency: Histogram
    late: Counter

    @classmethod
    def create(cls, meter: Meter) -> FeatureInstruments:
        c, g, h = meter.create_counter, meter.create_gauge, meter.create_histogram
        return cls(
            input=c("marketpipe.features.input", unit="{tick}",
                    description="Ticks read per query"),
            input_rate=g("marketpipe.features.input.rate", unit="{tick}/s",
                         description="Ticks processed per second in the last micro-batch"),
            batch_duration=h("marketpipe.features.batch.duration", unit="s",
                             description="Micro-batch duration, trigger to commit"),
            state_rows=g("marketpipe.features.state.rows", unit="{row}",
                         description="Rows in the query's aggregation state"),
            state_memory=g("marketpipe.features.state.memory", unit="By",
                           description="Memory of the query's aggregation state"),
            watermark_dropped=c("marketpipe.features.watermark.dropped", unit="{row}",
                                description="Window copies of ticks dropped behind the watermark"),
            watermark_delay=g("marketpipe.features.watermark.delay", unit="s",
                              description="Wall clock minus the query's event-time watermark"),
            source_lag=g("marketpipe.features.source.lag", unit="{message}",
                         description="Messages in ticks.valid past the query's last batch"),
            rows_written=c("marketpipe.features.rows.written", unit="{row}",
                           description="Rows written per output"),
            latency=h("marketpipe.features.latency", unit="s",
                      description="Event time of a row's newest tick -> the row written"),
            feed_latency=h("marketpipe.features.feed.latency", unit="s",
                           description="A tick's receipt by its source minus its event time "
                           "(a sample of up to 1,000 archived ticks per micro-batch)"),
            late=c("marketpipe.features.late_ticks", unit="{tick}",
                   description="Ticks older than an earlier batch's newest (archived)"),
        )  # fmt: skip
