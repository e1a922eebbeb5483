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

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="broker addresses, host:port[,host:port...]"
    )
    client_id: str = Field("marketpipe", description="client id the broker logs and quotas see")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how to reach the broker"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (a secret: masked by `marketpipe settings`)"
    )
    ssl_ca_location: str | None = Field(
        None,
        description="CA certificate (PEM file) that signs the brokers' certificates, for SSL and "
        "SASL_SSL (unset: the system's CAs)",
    )

    topic_raw: str = Field(
        "ticks.raw",
        min_length=1,
        max_length=249,
        description="topic the sources publish to and the checker reads",
    )
    topic_valid: str = Field(
        "ticks.valid",
        min_length=1,
        max_length=249,
        description="topic of checked ticks, the features job's input",
    )
    topic_dlq: str = Field(
        "ticks.dlq",
        min_length=1,
        max_length=249,
        description="dead-letter topic: rejected messages with the reasons in headers",
    )
    topic_quality_state: str = Field(
        "ticks.quality.state",
        min_length=1,
        max_length=249,
        description=(
            "Compacted changelog of the quality checker's per-symbol state (partitioned like raw)."
        ),
    )
    partitions: PositiveInt = Field(
        6, description="partitions of the pipeline topics when `marketpipe topics` creates them"
    )
    replication_factor: PositiveInt = Field(
        1, description="replicas of each partition of new topics"
    )
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1, description="-1 keeps records forever.")
    dlq_retention_ms: int = Field(
        30 * 24 * 3600 * 1000,
        ge=-1,
        description="how long the dead-letter topic keeps records (-1: forever)",
    )
    linger_ms: NonNegativeInt = Field(5, description="how long the producer waits to fill a batch")
    batch_size: PositiveInt = Field(1_000_000, description="largest producer batch in bytes")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="compression of produced batches"
    )
    queue_max_messages: PositiveInt = Field(
        1_000_000, description="messages the producer may hold unacknowledged"
    )
    delivery_timeout_ms: PositiveInt = Field(
        120_000,
        description=("how long one message may take to be acknowledged before it counts as failed"),
    )
    connect_timeout_s: PositiveFloat = Field(
        10.0,
        description="how long a command or stage waits at start for the broker to answer "
        "before it says so in one line and exits (the chart sets it to outlast Redpanda's start)",
    )
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
    topic_wait_s: NonNegativeFloat = Field(
        0.0,
        description=(
            "How long commands wait for their topics to appear before giving up (0: "
            "fail at once). In a Helm install the topics Job runs after the "
            "services start, so the chart sets it."
        ),
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Raw librdkafka properties applied last, e.g. {"ssl.ca.location": "/etc/ca.pem"}.'
        ),
    )

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

    malformed: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "fraction of extra malformed messages (truncated JSON, random bytes, a "
            "missing field, a wrong type, NaN, empty)"
        ),
    )
    crossed: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="fraction of ticks sent with a crossed quote (bid above ask)",
    )
    duplicate: float = Field(0.0, ge=0.0, le=1.0, description="fraction of ticks sent twice")
    out_of_order: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "fraction of ticks with their event time pushed out_of_order_ms into the past"
        ),
    )
    out_of_order_ms: PositiveFloat = Field(
        5_000.0, description="How far back an out-of-order tick's event time is pushed."
    )

    @model_validator(mode="after")
    def _exclusive_fit(self) -> FaultSettings:
        if self.crossed + self.out_of_order > 1.0:
            raise ValueError("crossed + out_of_order fractions must not exceed 1")
        return self


class ProducerSettings(_Section):
    """The synthetic producer: which symbols, how they move, how fast they arrive."""

    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated symbols, each NAME or NAME:START_PRICE, e.g. "
        "AAPL:189.5,MSFT:415,BTC-USD:64000 (empty: symbol_count SYMnnn names)",
    )
    symbol_count: PositiveInt = Field(
        10, description="how many symbols (SYM000, SYM001, ...) when symbols is empty"
    )
    tps: NonNegativeFloat = Field(
        1_000.0,
        description=(
            "Total ticks per second over all symbols; 0 produces as fast as the broker takes them."
        ),
    )
    jitter_ms: NonNegativeFloat = Field(
        0.0, description="uniform jitter of arrival times around the even schedule"
    )
    duration_s: PositiveFloat | None = Field(
        None, description="stop after this many seconds (unset: run until stopped)"
    )
    count: PositiveInt | None = Field(None, description="stop after this many ticks")
    history_s: NonNegativeFloat = Field(
        0.0,
        description="first publish this many seconds of generated history (event times in the "
        "past, sent as fast as the broker takes them), then go on live; list the source in "
        "quality.historical_sources or the checker calls the history stale",
    )
    history_tps: PositiveFloat | None = Field(
        None, description="ticks per second of market time in the history (default: tps)"
    )
    seed: int | None = Field(
        None, description="random seed for reproducible prices, sizes, jitter and faults"
    )
    start_price: PositiveFloat = Field(
        100.0, description="start price of symbols without one of their own"
    )
    drift: float = Field(
        0.0,
        description=("annualised drift of the geometric Brownian motion (365-day year)"),
    )
    volatility: NonNegativeFloat = Field(
        0.3, description="annualised volatility of the geometric Brownian motion"
    )
    tick_size: PositiveFloat = Field(0.01, description="price grid")
    spread_bps: PositiveFloat = Field(
        2.0, description="typical bid/ask spread in basis points of the price"
    )
    lot_size: PositiveFloat = Field(1.0, description="trade sizes are whole multiples of this")
    mean_trade_size: PositiveFloat = Field(100.0, description="mean of the log-normal trade sizes")
    source: str = Field("synthetic", min_length=1, description="value of the ticks' source field")
    resume: bool = Field(
        True,
        description="continue each symbol's seq and price from its newest tick in the topic "
        "(a restarted producer otherwise repeats seq 1.., which the checker drops as duplicates)",
    )
    batch_size: PositiveInt = Field(4_096, description="ticks generated and published per batch")
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

    format: Literal["auto", "kibot", "csv", "parquet"] = Field(
        "auto",
        description=(
            "auto detects Parquet and kibot-style files; anything else is read as generic CSV."
        ),
    )
    preset: Literal["ccxt-trades", "histdata-quotes"] | None = Field(
        None,
        description=(
            "A named mapping for a format met in the wild (see docs/usage.md): "
            "ccxt-trades, histdata-quotes."
        ),
    )
    columns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Contract field -> file column (header name or 0-based position), e.g. time=timestamp."
        ),
    )
    header: bool | None = Field(
        None,
        description="whether CSV files start with a header (unset: yes, unless the columns "
        "are all positions)",
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV delimiter")
    time_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None, description="epoch unit of a numeric time column (default: guessed from its size)"
    )
    time_format: str | None = Field(
        None, description='"iso" or a strptime format such as "%Y%m%d %H%M%S%f".'
    )
    tz: str | None = Field(
        None,
        description=(
            "Zone of naive times: IANA name, UTC, or a fixed offset like -05:00 (kibot: New York)."
        ),
    )
    price_scale: PositiveFloat = Field(
        1.0, description="multiply prices by this (e.g. 0.0001 for integer pips)"
    )
    symbol: str | None = Field(
        None,
        description=(
            "Symbol for files without a symbol column (default: the file name without extension)."
        ),
    )
    only_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Publish only these symbols (empty: all)."
    )
    speed: NonNegativeFloat = Field(
        0.0, description="1 = real time, N = N times faster, 0 = as fast as possible."
    )
    start_at: str | None = Field(
        None,
        description=(
            "Skip rows before this instant (ISO 8601 or epoch s/ms/us) to resume a replay."
        ),
    )
    source: str = Field("replay", min_length=1, description="value of the ticks' source field")
    chunk_rows: PositiveInt = Field(10_000, description="rows read and published per chunk")

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
            from marketpipe.ingest.timeparse import INSTANT_SYNTAX, parse_instant

            try:
                parse_instant(value)
            except ValueError:
                raise ValueError(f"want {INSTANT_SYNTAX}") from None
        return value


class QualitySettings(_Section):
    """The quality checker: delivery guarantee, state, and every rule's threshold."""

    group_id: str = Field("marketpipe-quality", description="consumer group of the checkers")
    instance_id: str | None = Field(
        None,
        description=(
            "This instance's static group membership and transactional id (default: "
            "host name). Keep it stable across restarts (a StatefulSet pod name): a "
            "restart then takes its partitions straight back and fences the crashed "
            "incarnation's open transaction at once."
        ),
    )
    delivery: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description=(
            "exactly_once (transactions: each message in valid or dlq once) or at_least_once"
        ),
    )
    batch_size: PositiveInt = Field(
        5_000, description="messages checked and committed per transaction"
    )
    poll_timeout_s: PositiveFloat = Field(
        0.1,
        description=(
            "Longest wait for input per poll: a batch is checked and committed when it "
            "holds batch_size messages or this long has passed, so it bounds the delay "
            "the checker adds at low rates."
        ),
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        le=300_000,
        description=(
            "How soon a crashed instance's partitions move to another one (Kafka's "
            "default is 45 s)."
        ),
    )
    max_poll_interval_ms: int = Field(
        30_000,
        ge=1_000,
        le=3_600_000,
        description=(
            "Longest pause between polls before the group moves our partitions "
            "away; some brokers also wait this long for a crashed member during a "
            "rebalance."
        ),
    )
    transaction_timeout_ms: PositiveInt = Field(
        30_000, description="how long the broker keeps an open transaction of a silent checker"
    )
    max_message_bytes: PositiveInt = Field(
        65_536,
        description=(
            "largest message the checker forwards as it is (larger ones go to the DLQ as too_large)"
        ),
    )
    dlq_max_value_bytes: PositiveInt = Field(
        65_536,
        description="DLQ copies keep at most this many bytes of the value; a larger value is "
        "cut, with its original size and sha256 in headers (keep well below the broker's "
        "max.message.bytes)",
    )
    allow_locked: bool = Field(
        False, description="accept locked quotes (bid == ask) from every source"
    )
    allow_locked_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["replay"],
        description=(
            "Sources whose quotes may be locked (bid == ask): trade-only replays "
            "lock them on purpose."
        ),
    )
    max_spread_bps: PositiveFloat = Field(
        1_000.0, description="widest bid/ask spread accepted, in basis points of the mid"
    )
    price_tolerance_bps: NonNegativeFloat = Field(
        100.0,
        description=("How far outside [bid, ask] a trade may print, in basis points of the quote."),
    )
    max_jump_pct: PositiveFloat = Field(
        10.0, description="Largest move against the symbol's last valid price, in percent."
    )
    out_of_order_tolerance_ms: NonNegativeFloat = Field(
        1_000.0,
        description=("how far a tick's event time may lie behind the symbol's newest valid tick"),
    )
    stale_after_ms: NonNegativeFloat = Field(
        60_000.0, description="Event time this far behind arrival is stale (0 disables)."
    )
    future_skew_ms: NonNegativeFloat = Field(
        5_000.0, description="how far in the future an event time may lie (clock skew)"
    )
    historical_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["replay"],
        description="Sources whose ticks are history (replays): no stale or future checks.",
    )

    _split_lists = field_validator("allow_locked_sources", "historical_sources", mode="before")(
        _split_csv
    )


class LiveSettings(_Section):
    """The live source: a Polygon.io-style REST API polled for last trade and quote."""

    mode: Literal["poll", "stream"] = Field(
        "poll",
        description="poll: last trade and NBBO per symbol every poll_interval_s (a sample of "
        "the tape); stream: every trade and quote from the WebSocket feed, with the gaps of a "
        "disconnect or restart filled from the REST history",
    )
    stream_url: str = Field(
        "wss://socket.polygon.io/stocks", description="WebSocket feed of the stream mode"
    )
    gap_fill_max_s: PositiveFloat = Field(
        3600.0,
        description="stream mode: how far back a gap-fill reaches when the topic has nothing "
        "newer (a first start fetches this much history)",
    )
    stream_silence_s: NonNegativeFloat = Field(
        30.0,
        description="stream mode: a feed that sends nothing for this long while connected "
        "(a provider can drop messages and keep the connection) is checked against the "
        "history: the gap-fill runs as after a reconnect, and again every such period while "
        "the silence lasts. 0: only connects fill gaps",
    )
    base_url: str = Field(
        "https://api.polygon.io", description="base URL of the Polygon.io-style REST API"
    )
    api_key: SecretStr | None = Field(
        None, description="API key (a secret: masked by `marketpipe settings`)"
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated symbols to poll"
    )
    poll_interval_s: PositiveFloat = Field(1.0, description="seconds between poll rounds")
    request_timeout_s: PositiveFloat = Field(10.0, description="timeout of one HTTP request")
    max_retries: NonNegativeInt = Field(
        4, description="Retries of one request after connection errors, timeouts and 5xx."
    )
    max_rate_limit_waits: NonNegativeInt = Field(
        10, description=("429 answers honoured (waiting Retry-After) before a request is given up.")
    )
    backoff_initial_s: PositiveFloat = Field(
        0.5, description="first delay before retrying a failed request (doubles, with jitter)"
    )
    backoff_max_s: PositiveFloat = Field(
        30.0, description="longest delay between retries of a request"
    )
    max_requests_per_s: PositiveFloat = Field(
        20.0, description="Client-side cap on requests per second across all symbols."
    )
    metadata_ttl_s: PositiveFloat = Field(
        3600.0,
        description=('How long symbol metadata (and "this symbol does not exist") is trusted.'),
    )
    coverage_interval_s: NonNegativeFloat = Field(
        300.0, description="Compare polled trades with minute aggregates this often (0 disables)."
    )
    duration_s: PositiveFloat | None = Field(
        None, description="stop after this many seconds (unset: run until stopped)"
    )
    source: str = Field("polygon", min_length=1, description="value of the ticks' source field")

    _split_symbols = field_validator("symbols", mode="before")(_split_csv)


class PostgresSettings(_Section):
    """PostgreSQL / TimescaleDB, the hot store."""

    host: str = Field("127.0.0.1", description="PostgreSQL/TimescaleDB host")
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    database: str = Field("marketpipe", description="database of the feature tables")
    user: str = Field("marketpipe", description="user name")
    password: SecretStr = Field(
        SecretStr(""), description="password (a secret: masked by `marketpipe settings`)"
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq sslmode"
    )

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

    endpoint_url: str | None = Field(
        None,
        description=("None means AWS itself; set it for MinIO or any other S3-compatible server."),
    )
    bucket: str = Field(
        "marketpipe", min_length=3, max_length=63, description="bucket of the cold store"
    )
    region: str = Field("us-east-1", description="region the S3 client signs for")
    access_key_id: str | None = Field(
        None, description="access key (a secret: masked by `marketpipe settings`)"
    )
    secret_access_key: SecretStr | None = Field(
        None, description="secret key (a secret: masked by `marketpipe settings`)"
    )


class OtelSettings(_Section):
    """OpenTelemetry metrics: pushed by ``exporter`` and/or served to Prometheus on
    ``metrics_port``; with neither (the default), instruments are no-ops and cost nothing."""

    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="push exporter of the metrics: none, console or otlp"
    )
    endpoint: str | None = Field(
        None,
        description=(
            "OTLP/HTTP endpoint, e.g. http://otel-collector:4318; defaults to the "
            "SDK's own default."
        ),
    )
    service_name: str = Field("marketpipe", description="service.name of pushed metrics")
    export_interval_ms: PositiveInt = Field(
        10_000, description="how often pushed metrics are exported"
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Prometheus text format at http://<metrics_address>:<metrics_port>/metrics; 0 = off."
        ),
    )
    metrics_address: str = Field("0.0.0.0", description="address the /metrics endpoint binds")


LocalService = Literal["kafka", "postgres", "s3"]
LOCAL_SERVICES: tuple[LocalService, ...] = ("kafka", "postgres", "s3")


FeatureSink = Literal["duckdb", "postgres", "parquet"]
HotSink = Literal["duckdb", "postgres"]
DEFAULT_FEATURE_SINKS: tuple[FeatureSink, ...] = ("duckdb",)


class FeaturesSettings(_Section):
    """The Spark features job: source, windows, trigger, checkpoints, sinks."""

    source: Literal["python", "connector"] = Field(
        "python",
        description=(
            '"python": the Python Data Source reader (local mode, tests); '
            '"connector": Spark\'s spark-sql-kafka connector (the cluster image). '
            "Both give the same columns."
        ),
    )
    master: str = Field(
        "local[2]", description="Spark master (local[N] here; k8s://... on a cluster)"
    )
    shuffle_partitions: PositiveInt = Field(
        2,
        description=(
            "Spark's shuffle partitions (spark.sql.shuffle.partitions): one per "
            "core of local[2]. The streaming queries shuffle nothing (the features "
            "query folds its windows in the driver); Spark SQL elsewhere uses it."
        ),
    )
    checkpoint_dir: str = Field(
        ".marketpipe/checkpoints",
        description=("where the streaming queries keep their checkpoints (a folder or s3a://...)"),
    )
    state_dir: str = Field(
        "",
        description=(
            "Where the features query keeps the windows still open between micro-batches "
            "(a folder, s3:// or s3a://...; empty: in the query's checkpoint folder). A "
            "checkpoint and its state belong together: restore or delete both."
        ),
    )
    trigger_s: PositiveFloat = Field(
        0.5,
        description=(
            "Micro-batch trigger of the features query, in seconds. Latency of the rows "
            "is about this plus a micro-batch's work; below 0.5 s the work dominates."
        ),
    )
    cold_trigger_s: PositiveFloat = Field(
        10.0,
        description=(
            "How often cold storage gets files: the archive query's trigger (raw ticks), "
            "and the span of event time the features query's closed windows gather "
            "before it exports them. Cold data needs no second-level latency, and each "
            "write is a file per symbol, so a longer interval means fewer, larger files "
            "and less work competing with the features query. (Reading from the "
            "archive, the archive query uses trigger_s.) A stream that stops leaves its "
            "last closed windows, up to this span, in the hot store only until more "
            "ticks arrive."
        ),
    )
    watermark_s: NonNegativeFloat = Field(
        10.0, description="How late an event may arrive and still count (event-time watermark)."
    )
    idle_partition_s: PositiveFloat = Field(
        10.0,
        description=(
            "The event-time watermark follows the slowest partition of ticks.valid; one "
            "that brings no tick while the others bring ticks for this long (wall clock) "
            "stops holding it back, but none does while the whole topic pauses. A "
            "partition that has brought nothing holds it for this long after the first "
            "ticks come: a burst of history may reach it last. "
            "(Read from the archive, the watermark follows the newest tick.)"
        ),
    )
    bar_intervals_s: Annotated[list[PositiveInt], NoDecode] = Field(
        default_factory=lambda: [1, 60], description="bar intervals in seconds, comma-separated"
    )
    window_length_s: PositiveInt = Field(
        60, description="length of the sliding windows (log return, volatility)"
    )
    window_slide_s: PositiveInt = Field(10, description="slide of the sliding windows")
    max_offsets_per_trigger: PositiveInt = Field(
        500_000, description="most ticks one micro-batch reads"
    )
    duckdb_path: str = Field(
        ".marketpipe/marketpipe.duckdb", description="the DuckDB file of the duckdb sink"
    )
    archive_root: str = Field(
        ".marketpipe/archive",
        description=(
            "Cold storage root: valid ticks under raw/ (the backfill's input) and, "
            "with the parquet sink, closed feature windows under bars/, "
            "window_features/, indicators/. A folder, or s3://bucket/prefix (MinIO; "
            "credentials from MARKETPIPE_S3__*). Empty: no cold storage."
        ),
    )
    sinks: Annotated[list[FeatureSink], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_FEATURE_SINKS),
        description="where features go, comma-separated: duckdb and postgres are hot (rows "
        "upserted as windows change), parquet is cold (closed windows only); every sink is "
        "idempotent, so any mix is",
    )
    read_from: Literal["topic", "archive"] = Field(
        "topic",
        description=(
            'Where the feature queries read ticks: "topic" (each query reads '
            'ticks.valid itself) or "archive" (the archive query reads and parses '
            "the topic once; the others stream the Parquet files it writes to a "
            "local archive folder, read by Spark natively: bounded runs are 1.6x "
            "faster, live latency no better, and the file source lists a folder "
            "that grows by a file per symbol per micro-batch). The choice is part "
            "of the checkpoints' names."
        ),
    )
    indicator_interval_s: PositiveInt = Field(
        60, description="Indicators (SMA, EMA, RSI, MACD) run on closed bars of this length."
    )
    sink_retry_give_up_s: PositiveFloat = Field(
        300.0,
        description=(
            "A sink outage (PostgreSQL down or restarting, S3 unreachable, the "
            "DuckDB file locked by another process) does not fail the job: the "
            "micro-batch's writes (idempotent) are redone after exponential backoff "
            "with full jitter, from sink_retry_initial_s up to sink_retry_max_s "
            "between attempts, one log line each. After sink_retry_give_up_s of "
            "failing, the job exits 1 with one line saying which sink failed and "
            "why (a restart resumes from the checkpoint). Permanent errors (SQL, "
            "missing tables, credentials) fail at once."
        ),
    )
    sink_retry_initial_s: PositiveFloat = Field(
        0.5, description="first delay before a failed sink write is retried"
    )
    sink_retry_max_s: PositiveFloat = Field(
        10.0, description="longest delay between retries of a sink write"
    )
    driver_java_options: str = Field(
        "-XX:TieredStopAtLevel=1",
        description=(
            "JVM options of the Spark driver (as spark.driver.defaultJavaOptions: "
            "spark.driver.extraJavaOptions in spark_conf adds to them; not applied "
            "under spark-submit, whose driver JVM is already running). The default "
            "keeps the JIT to its quick C1 tier: in "
            "local mode the driver also runs the tasks, and on few cores the C2 "
            "compiler's threads slow a (re)started job's first minute more than its "
            "code gains (measured: no loss of steady throughput in local[2])."
        ),
    )
    class_archive: str = Field(
        "auto",
        description=(
            "A class-data archive (JVM CDS) that makes the driver start faster: when "
            "the file is missing and its folder writable, `features` or `backfill` has "
            "its JVM write it at a clean exit (to a file of its own, renamed into place "
            "once the JVM has exited 0); later starts map it (the Spark session up about "
            '30% sooner). "auto": in the user\'s cache folder ($XDG_CACHE_HOME or '
            "~/.cache, then marketpipe/), named after the Spark version and a "
            "fingerprint of the JDK and the jars, so an upgrade gets a new one; shared "
            "by every run whatever its working folder. The JVM ignores an archive it "
            "cannot use (sometimes silently): delete it and the next clean exit writes "
            "a new one. Empty: none. Not applied under spark-submit (its driver JVM "
            "is already running)."
        ),
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra Spark properties applied last, as a JSON object, e.g. the driver "
            'pod\'s name in the Helm chart: {"spark.kubernetes.driver.pod.name": '
            '"..."}. Static cluster properties belong in spark-defaults.conf '
            "($SPARK_CONF_DIR), which the chart mounts."
        ),
    )

    _split_sinks = field_validator("sinks", mode="before")(_split_csv)
    _split_intervals = field_validator("bar_intervals_s", mode="before")(_split_csv)

    @property
    def hot_sink(self) -> HotSink:
        """The first hot sink: where indicator state is read back, what validate checks."""
        return next(s for s in self.sinks if s != "parquet")

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

    data_dir: Path = Field(
        Path(".marketpipe/local"),
        description="where the local stack keeps its data and endpoints.env",
    )
    services: Annotated[list[LocalService], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_SERVICES),
        description="which local services `marketpipe local up` starts, comma-separated",
    )
    startup_timeout_s: PositiveFloat = Field(
        60.0, description="how long `marketpipe local up` waits for each service"
    )

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

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level of every stage"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "text: one readable line per record; json: one JSON object per line (Loki, ELK)."
        ),
    )
    health_file: str | None = Field(
        None,
        description=(
            "Long-running services touch this file while their main loop turns; "
            "`marketpipe health` (the Kubernetes liveness probe) checks its age. "
            "Unset: no heartbeat."
        ),
    )
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
