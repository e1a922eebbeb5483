"""The one settings object of marketpipe.

Every knob is an environment variable ``MARKETPIPE_<SECTION>__<FIELD>`` (or a line in ``.env``).
Components receive their section; only this module reads the environment. ``load_settings`` is
called by entrypoints, never at import time, so tests can build their own ``Settings``.

The local stack (``marketpipe local up``) writes the endpoints it started to
``<local.data_dir>/endpoints.env``; ``load_settings`` reads that file beneath ``.env`` and the real
environment, so commands find the local services without any exports.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "MARKETPIPE_"
NESTED_DELIMITER = "__"
ENDPOINTS_FILE = "endpoints.env"


_SectionT = TypeVar("_SectionT", bound=BaseModel)


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable (or CLI option)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _split_csv(value: Any) -> Any:
    """Accept ``A,B,C`` as well as a JSON list for list-valued settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return orjson.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class KafkaSettings(_Section):
    """Broker connection, topics and producer tuning (any Kafka-API broker: Redpanda, Kafka)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "marketpipe"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    topic_raw: str = Field("ticks.raw", min_length=1, max_length=249)
    topic_valid: str = Field("ticks.valid", min_length=1, max_length=249)
    topic_dlq: str = Field("ticks.dlq", min_length=1, max_length=249)
    # Compacted changelog of the quality checker's per-symbol state (partitioned like raw).
    topic_quality_state: str = Field("ticks.quality.state", min_length=1, max_length=249)
    partitions: PositiveInt = 6
    replication_factor: PositiveInt = 1
    # -1 keeps records forever.
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1)
    linger_ms: NonNegativeInt = 5
    batch_size: PositiveInt = 1_000_000
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    queue_max_messages: PositiveInt = 1_000_000
    delivery_timeout_ms: PositiveInt = 120_000
    connect_timeout_s: PositiveFloat = 30.0
    retry_backoff_s: PositiveFloat = Field(
        0.5, description="first delay before a stage retries a failed Kafka operation (doubles)"
    )
    retry_backoff_max_s: PositiveFloat = Field(
        10.0, description="longest delay between retries of a failed Kafka operation"
    )
    give_up_s: PositiveFloat = Field(
        300.0,
        description="how long a stage keeps retrying without progress (broker down, nothing "
        "acknowledged or committed) before it exits with one line",
    )
    call_timeout_s: PositiveFloat = Field(
        30.0, description="timeout of each blocking client call (commit, offsets, metadata)"
    )
    # How long commands wait for their topics to appear before giving up (0: fail at once).
    # In a Helm install the topics Job runs after the services start, so the chart sets it.
    topic_wait_s: NonNegativeFloat = 0.0
    # Raw librdkafka properties applied last, e.g. {"ssl.ca.location": "/etc/ca.pem"}.
    extra_config: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "SASL needs MARKETPIPE_KAFKA__SASL_MECHANISM, __SASL_USERNAME and __SASL_PASSWORD"
            )
        return self


class FaultSettings(_Section):
    """Fractions of deliberately bad records the synthetic producer injects (0 disables)."""

    malformed: float = Field(0.0, ge=0.0, le=1.0)
    crossed: float = Field(0.0, ge=0.0, le=1.0)
    duplicate: float = Field(0.0, ge=0.0, le=1.0)
    out_of_order: float = Field(0.0, ge=0.0, le=1.0)
    # How far back an out-of-order tick's event time is pushed.
    out_of_order_ms: PositiveFloat = 5_000.0

    @model_validator(mode="after")
    def _exclusive_fit(self) -> FaultSettings:
        if self.crossed + self.out_of_order > 1.0:
            raise ValueError("crossed + out_of_order fractions must not exceed 1")
        return self


class ProducerSettings(_Section):
    """The synthetic producer: which symbols, how they move, how fast they arrive."""

    # NAME or NAME:START_PRICE, e.g. AAPL:189.5,MSFT:415,BTC-USD:64000
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Used when ``symbols`` is empty: SYM000, SYM001, ...
    symbol_count: PositiveInt = 10
    # Total ticks per second over all symbols; 0 produces as fast as the broker takes them.
    tps: NonNegativeFloat = 1_000.0
    jitter_ms: NonNegativeFloat = 0.0
    duration_s: PositiveFloat | None = None
    count: PositiveInt | None = None
    history_s: NonNegativeFloat = Field(
        0.0,
        description="first publish this many seconds of generated history (event times in the "
        "past, sent as fast as the broker takes them), then go on live; list the source in "
        "quality.historical_sources or the checker calls the history stale",
    )
    history_tps: PositiveFloat | None = Field(
        None, description="ticks per second of market time in the history (default: tps)"
    )
    seed: int | None = None
    start_price: PositiveFloat = 100.0
    # Annualised drift and volatility of the geometric Brownian motion (365-day year).
    drift: float = 0.0
    volatility: NonNegativeFloat = 0.3
    tick_size: PositiveFloat = 0.01
    spread_bps: PositiveFloat = 2.0
    lot_size: PositiveFloat = 1.0
    mean_trade_size: PositiveFloat = 100.0
    source: str = Field("synthetic", min_length=1)
    resume: bool = Field(
        True,
        description="continue each symbol's seq and price from its newest tick in the topic "
        "(a restarted producer otherwise repeats seq 1.., which the checker drops as duplicates)",
    )
    batch_size: PositiveInt = 4_096
    faults: FaultSettings = Field(default_factory=FaultSettings)

    _split_symbols = field_validator("symbols", mode="before")(_split_csv)

    @field_validator("symbols")
    @classmethod
    def _symbols_well_formed(cls, value: list[str]) -> list[str]:
        names = []
        for item in value:
            name, _, price = item.partition(":")
            if not name or len(name) > 64 or any(c.isspace() for c in name):
                raise ValueError(f"bad symbol {item!r}: want NAME or NAME:START_PRICE")
            if price:
                try:
                    ok = math.isfinite(float(price)) and float(price) > 0
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"bad start price in {item!r}: want a positive number")
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError("symbols must be unique")
        return value

    @field_validator("start_price", "tick_size", "drift", "volatility")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def symbol_names(self) -> list[str]:
        return list(self.start_prices())

    def start_prices(self) -> dict[str, float]:
        """Each symbol with its start price (its own, or ``start_price``)."""
        if not self.symbols:
            width = max(3, len(str(self.symbol_count - 1)))
            return {f"SYM{i:0{width}d}": self.start_price for i in range(self.symbol_count)}
        out = {}
        for item in self.symbols:
            name, _, price = item.partition(":")
            out[name] = float(price) if price else self.start_price
        return out


class ReplaySettings(_Section):
    """The replay loader: how to read historical files and how fast to publish them."""

    # auto detects Parquet and kibot-style files; anything else is read as generic CSV.
    format: Literal["auto", "kibot", "csv", "parquet"] = "auto"
    # A named mapping for a format met in the wild (see README): ccxt-trades, histdata-quotes.
    preset: Literal["ccxt-trades", "histdata-quotes"] | None = None
    # Contract field -> file column (header name or 0-based position), e.g. time=timestamp.
    columns: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Whether CSV files start with a header; None = yes unless columns are all positions.
    header: bool | None = None
    delimiter: str = Field(",", min_length=1, max_length=1)
    time_unit: Literal["s", "ms", "us", "ns"] | None = None
    # "iso" or a strptime format such as "%Y%m%d %H%M%S%f".
    time_format: str | None = None
    # Zone of naive times: IANA name, UTC, or a fixed offset like -05:00 (kibot: New York).
    tz: str | None = None
    price_scale: PositiveFloat = 1.0
    # Symbol for files without a symbol column (default: the file name without extension).
    symbol: str | None = None
    # Publish only these symbols (empty: all).
    only_symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # 1 = real time, N = N times faster, 0 = as fast as possible.
    speed: NonNegativeFloat = 0.0
    # Skip rows before this instant (ISO 8601 or epoch s/ms/us) to resume a replay.
    start_at: str | None = None
    source: str = Field("replay", min_length=1)
    chunk_rows: PositiveInt = 10_000

    _split_symbols = field_validator("only_symbols", mode="before")(_split_csv)

    @field_validator("columns", mode="before")
    @classmethod
    def _parse_columns(cls, value: Any) -> Any:
        """``time=timestamp,price=price`` or a JSON object."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return orjson.loads(text)
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("want FIELD=COLUMN pairs separated by commas")
            return {k.strip(): v.strip() for k, v in pairs}
        return value

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, value: str | None) -> str | None:
        if value is not None:
            from marketpipe.ingest.timeparse import parse_tz

            parse_tz(value)
        return value

    @field_validator("start_at")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            from marketpipe.ingest.timeparse import parse_instant

            try:
                parse_instant(value)
            except ValueError:
                raise ValueError(
                    "want ISO 8601 (2024-01-02T14:30:00Z) or epoch seconds/ms/us"
                ) from None
        return value


class QualitySettings(_Section):
    """The quality checker: delivery guarantee, state, and every rule's threshold."""

    group_id: str = "marketpipe-quality"
    # This instance's static group membership and transactional id (default: host name). Keep
    # it stable across restarts (a StatefulSet pod name): a restart then takes its partitions
    # straight back and fences the crashed incarnation's open transaction at once.
    instance_id: str | None = None
    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    batch_size: PositiveInt = 5_000
    poll_timeout_s: PositiveFloat = 0.5
    # How soon a crashed instance's partitions move to another one (Kafka's default is 45 s).
    session_timeout_ms: int = Field(10_000, ge=1_000, le=300_000)
    # Longest pause between polls before the group moves our partitions away; some brokers
    # also wait this long for a crashed member during a rebalance.
    max_poll_interval_ms: int = Field(30_000, ge=1_000, le=3_600_000)
    transaction_timeout_ms: PositiveInt = 30_000
    max_message_bytes: PositiveInt = 65_536
    dlq_max_value_bytes: PositiveInt = Field(
        65_536,
        description="DLQ copies keep at most this many bytes of the value; a larger value is "
        "cut, with its original size and sha256 in headers (keep well below the broker's "
        "max.message.bytes)",
    )
    allow_locked: bool = False
    # Sources whose quotes may be locked (bid == ask): trade-only replays lock them on purpose.
    allow_locked_sources: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["replay"])
    max_spread_bps: PositiveFloat = 1_000.0
    # How far outside [bid, ask] a trade may print, in basis points of the quote.
    price_tolerance_bps: NonNegativeFloat = 100.0
    # Largest move against the symbol's last valid price, in percent.
    max_jump_pct: PositiveFloat = 10.0
    out_of_order_tolerance_ms: NonNegativeFloat = 1_000.0
    # Event time this far behind arrival is stale (0 disables).
    stale_after_ms: NonNegativeFloat = 60_000.0
    future_skew_ms: NonNegativeFloat = 5_000.0
    # Sources whose ticks are history (replays): no stale or future checks.
    historical_sources: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["replay"])

    _split_lists = field_validator("allow_locked_sources", "historical_sources", mode="before")(
        _split_csv
    )


class LiveSettings(_Section):
    """The live source: a Polygon.io-style REST API polled for last trade and quote."""

    base_url: str = "https://api.polygon.io"
    api_key: SecretStr | None = None
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    poll_interval_s: PositiveFloat = 1.0
    request_timeout_s: PositiveFloat = 10.0
    # Retries of one request after connection errors, timeouts and 5xx.
    max_retries: NonNegativeInt = 4
    # 429 answers honoured (waiting Retry-After) before a request is given up.
    max_rate_limit_waits: NonNegativeInt = 10
    backoff_initial_s: PositiveFloat = 0.5
    backoff_max_s: PositiveFloat = 30.0
    # Client-side cap on requests per second across all symbols.
    max_requests_per_s: PositiveFloat = 20.0
    # How long symbol metadata (and "this symbol does not exist") is trusted.
    metadata_ttl_s: PositiveFloat = 3600.0
    # Compare polled trades with minute aggregates this often (0 disables).
    coverage_interval_s: NonNegativeFloat = 300.0
    duration_s: PositiveFloat | None = None
    source: str = Field("polygon", min_length=1)

    _split_symbols = field_validator("symbols", mode="before")(_split_csv)


class PostgresSettings(_Section):
    """PostgreSQL / TimescaleDB, the hot store."""

    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    database: str = "marketpipe"
    user: str = "marketpipe"
    password: SecretStr = SecretStr("")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"

    def conninfo(self, database: str | None = None) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=database or self.database,
            user=self.user,
            password=self.password.get_secret_value(),
            sslmode=self.sslmode,
        )


class S3Settings(_Section):
    """S3-compatible object store (MinIO in the cluster), the cold store."""

    # None means AWS itself; set it for MinIO or any other S3-compatible server.
    endpoint_url: str | None = None
    bucket: str = Field("marketpipe", min_length=3, max_length=63)
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class OtelSettings(_Section):
    """OpenTelemetry metrics: pushed by ``exporter`` and/or served to Prometheus on
    ``metrics_port``; with neither (the default), instruments are no-ops and cost nothing."""

    exporter: Literal["none", "console", "otlp"] = "none"
    # OTLP/HTTP endpoint, e.g. http://otel-collector:4318; defaults to the SDK's own default.
    endpoint: str | None = None
    service_name: str = "marketpipe"
    export_interval_ms: PositiveInt = 10_000
    # Prometheus text format at http://<metrics_address>:<metrics_port>/metrics; 0 = off.
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_address: str = "0.0.0.0"


LocalService = Literal["kafka", "postgres", "s3"]
LOCAL_SERVICES: tuple[LocalService, ...] = ("kafka", "postgres", "s3")


FeatureSink = Literal["duckdb", "postgres", "parquet"]
DEFAULT_FEATURE_SINKS: tuple[FeatureSink, ...] = ("duckdb",)


class FeaturesSettings(_Section):
    """The Spark features job: source, windows, trigger, checkpoints, sinks."""

    # "python": the Python Data Source reader (local mode, tests); "connector": Spark's
    # spark-sql-kafka connector (the cluster image). Both give the same columns.
    source: Literal["python", "connector"] = "python"
    master: str = "local[2]"
    # One per core of local[2]: each stateful query pays per-partition state-store work every
    # micro-batch, and the queries already run side by side (4 doubled batch times here).
    shuffle_partitions: PositiveInt = 2
    checkpoint_dir: str = ".marketpipe/checkpoints"
    trigger_s: PositiveFloat = 1.0
    # Trigger of the archive query (raw ticks to cold storage): it needs no second-level
    # latency, and each micro-batch writes a file per symbol, so a longer interval means fewer,
    # larger files and less per-batch work competing with the features query. (Reading from
    # the archive, the archive query uses trigger_s.) Closed feature windows go to cold storage
    # with the features query's micro-batches.
    cold_trigger_s: PositiveFloat = 10.0
    # How late an event may arrive and still count (event-time watermark).
    watermark_s: NonNegativeFloat = 10.0
    bar_intervals_s: Annotated[list[PositiveInt], NoDecode] = Field(default_factory=lambda: [1, 60])
    window_length_s: PositiveInt = 60
    window_slide_s: PositiveInt = 10
    max_offsets_per_trigger: PositiveInt = 500_000
    duckdb_path: str = ".marketpipe/marketpipe.duckdb"
    # Cold storage root: valid ticks under raw/ (the backfill's input) and, with the parquet
    # sink, closed feature windows under bars/, window_features/, indicators/. A folder, or
    # s3://bucket/prefix (MinIO; credentials from MARKETPIPE_S3__*). Empty: no cold storage.
    archive_root: str = ".marketpipe/archive"
    # Where features land: duckdb and postgres are hot (rows upserted as windows change),
    # parquet is cold (closed windows only). Every sink is idempotent, so any mix is.
    sinks: Annotated[list[FeatureSink], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_FEATURE_SINKS)
    )
    # Where the feature queries read ticks: "topic" (each query reads ticks.valid itself) or
    # "archive" (the archive query reads and parses the topic once; the others stream the
    # Parquet files it writes to a local archive folder, read by Spark natively: bounded runs
    # are 1.6x faster, live latency no better, and the file source lists a folder that grows
    # by a file per symbol per micro-batch). The choice is part of the checkpoints' names.
    read_from: Literal["topic", "archive"] = "topic"
    # Indicators (SMA, EMA, RSI, MACD) run on closed bars of this length.
    indicator_interval_s: PositiveInt = 60
    # A sink outage (PostgreSQL down or restarting, S3 unreachable, the DuckDB file locked by
    # another process) does not fail the job: the micro-batch's writes (idempotent) are redone
    # after exponential backoff with full jitter, from sink_retry_initial_s up to
    # sink_retry_max_s between attempts, one log line each. After sink_retry_give_up_s of
    # failing, the job exits 1 with one line saying which sink failed and why (a restart resumes
    # from the checkpoint). Permanent errors (SQL, missing tables, credentials) fail at once.
    sink_retry_give_up_s: PositiveFloat = 300.0
    sink_retry_initial_s: PositiveFloat = 0.5
    sink_retry_max_s: PositiveFloat = 10.0
    # Extra Spark properties applied last, as a JSON object, e.g. the driver pod's name in the
    # Helm chart: {"spark.kubernetes.driver.pod.name": "..."}. Static cluster properties belong
    # in spark-defaults.conf ($SPARK_CONF_DIR), which the chart mounts.
    spark_conf: dict[str, str] = Field(default_factory=dict)

    _split_sinks = field_validator("sinks", mode="before")(_split_csv)
    _split_intervals = field_validator("bar_intervals_s", mode="before")(_split_csv)

    @property
    def hot_sink(self) -> str:
        """The first hot sink: where indicator state is read back, what validate checks."""
        return next(s for s in self.sinks if s in ("duckdb", "postgres"))

    @model_validator(mode="after")
    def _sinks_usable(self) -> FeaturesSettings:
        if not {"duckdb", "postgres"} & set(self.sinks):
            raise ValueError(
                "sinks need duckdb or postgres: indicators continue from the hot store's state"
            )
        if "parquet" in self.sinks and not self.archive_root:
            raise ValueError("the parquet sink writes under MARKETPIPE_FEATURES__ARCHIVE_ROOT")
        if self.read_from == "archive" and not self.archive_local:
            raise ValueError(
                "read_from=archive needs MARKETPIPE_FEATURES__ARCHIVE_ROOT to be a local folder"
            )
        return self

    @property
    def archive_local(self) -> bool:
        return bool(self.archive_root) and "://" not in self.archive_root


class DashboardSettings(_Section):
    """``marketpipe dashboard``: charts of the feature tables and the pipeline's health."""

    address: str = Field("127.0.0.1", description="address the web server binds (0.0.0.0 in a pod)")
    port: int = Field(8501, ge=1, le=65535, description="web server port")
    sink: Literal["duckdb", "postgres"] | None = Field(
        None,
        description="hot store to read (default: the features job's first hot sink); a running "
        "features job holds the DuckDB file, so watch a live run through postgres",
    )
    refresh_s: PositiveFloat = Field(5.0, description="seconds between automatic refreshes")
    bars: int = Field(240, ge=10, le=5_000, description="bars per chart (each query is bounded)")
    prometheus_url: str = Field(
        "",
        description="Prometheus that scrapes the stages, for rates, DLQ by reason and lag "
        "(empty: only what the hot store tells)",
    )


class LocalSettings(_Section):
    """The local stack of real stand-in services (``marketpipe local``)."""

    data_dir: Path = Path(".marketpipe/local")
    services: Annotated[list[LocalService], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_SERVICES)
    )
    startup_timeout_s: PositiveFloat = 60.0

    _split_services = field_validator("services", mode="before")(_split_csv)


class Settings(BaseSettings):
    """Everything marketpipe can be told, one section per component."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text: one readable line per record; json: one JSON object per line (Loki, ELK).
    log_format: Literal["text", "json"] = "text"
    # Long-running services touch this file while their main loop turns; `marketpipe health`
    # (the Kubernetes liveness probe) checks its age. Unset: no heartbeat.
    health_file: str | None = None
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    otel: OtelSettings = Field(default_factory=OtelSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)


def env_name(loc: tuple[str | int, ...]) -> str:
    """``("kafka", "partitions")`` -> ``MARKETPIPE_KAFKA__PARTITIONS``."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + NESTED_DELIMITER.join(parts).upper()


def known_env_names(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every variable name the settings understand, nested sections expanded."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        name = prefix + field_name.upper()
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.add(name)  # a whole section as JSON is accepted too
            names |= known_env_names(annotation, name + NESTED_DELIMITER)
        else:
            names.add(name)
    return names


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    known = known_env_names()
    return sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def describe_validation_error(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """One line naming each offending variable (or CLI option, via ``names``) and what is wrong."""
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        field = str(loc[-1]) if loc else ""
        name = (names or {}).get(field) or env_name(loc)
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown setting"
        elif err.get("type") == "missing":
            msg = "required but not set"
        value = err.get("input")
        shown = ""
        if err.get("type") not in ("missing", "extra_forbidden") and not isinstance(
            value, dict | BaseModel
        ):
            secret = "password" in name.lower() or "secret" in name.lower()
            shown = " (got ***)" if secret else f" (got {value!r})"
        problems.append(f"{name}: {msg}{shown}")
    return "invalid setting " + "; ".join(problems)


def load_settings(env_file: Path | str | None = ".env", **overrides: Any) -> Settings:
    """Build Settings from the environment, ``.env`` and the local stack's endpoints file.

    Precedence, highest first: ``overrides``, environment, ``env_file``, the endpoints file,
    defaults. Raises ConfigError with a one-line message naming the variable on any problem.
    """
    unknown = _unknown_variables(dict(os.environ))
    if unknown:
        known = known_env_names()
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hints.append(name + (f" (did you mean {close[0]}?)" if close else ""))
        raise ConfigError("unknown setting " + ", ".join(hints))
    files: tuple[Path | str, ...] = (env_file,) if env_file else ()
    try:
        first = Settings(_env_file=files or None, **overrides)
        endpoints = first.local.data_dir / ENDPOINTS_FILE
        if not endpoints.is_file():
            return first
        return Settings(_env_file=(endpoints, *files), **overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def with_overrides(section: _SectionT, options: dict[str, str], **values: Any) -> _SectionT:
    """Return ``section`` with CLI values applied (None means 'not given') and re-validated.

    ``options`` maps field names to the CLI option that set them, so errors name the option.
    """
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, options)) from None


def flatten_env(
    settings: BaseModel, prefix: str = ENV_PREFIX, reveal_secrets: bool = False
) -> dict[str, str]:
    """Effective settings as ``MARKETPIPE_...`` variables; secrets masked unless revealed."""
    out: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        key = prefix + name.upper()
        if isinstance(value, BaseModel):
            out.update(flatten_env(value, key + NESTED_DELIMITER, reveal_secrets))
        elif isinstance(value, SecretStr):
            secret = value.get_secret_value()
            out[key] = secret if reveal_secrets or not secret else "**********"
        elif value is None:
            out[key] = ""
        elif isinstance(value, list | dict):
            out[key] = orjson.dumps(value).decode()
        else:
            out[key] = str(value)
    return out


def overrides_from_env(env: dict[str, str]) -> dict[str, Any]:
    """``{"MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS": v}`` -> ``{"kafka": {"bootstrap_servers": v}}``."""
    nested: dict[str, Any] = {}
    for name, value in env.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split(NESTED_DELIMITER)
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return nested


def settings_with_env(base: Settings, env: dict[str, str]) -> Settings:
    """``base`` with the given settings variables applied on top, validated."""
    data = base.model_dump()
    for section, values in overrides_from_env(env).items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return Settings.model_validate(data)
