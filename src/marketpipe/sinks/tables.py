"""The feature tables, declared once: each column's type and nullability, and the upsert key.
The DDL (PostgreSQL and DuckDB alike, ``TableSpec.ddl``), the Arrow schema of the cold Parquet
files (``arrow_schema``) and the column order the sinks write in all come from here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from marketpipe.settings import ConfigError


class SchemaMismatch(ConfigError):
    """A sink's table lacks columns this version writes (created by an older marketpipe)."""


Kind = Literal["text", "int32", "int64", "float", "time"]
_UTC_US = pa.timestamp("us", tz="UTC")
#: Kind -> (Arrow type, SQL type valid in PostgreSQL and DuckDB).
KINDS: dict[Kind, tuple[pa.DataType, str]] = {
    "text": (pa.string(), "text"), "int32": (pa.int32(), "integer"),
    "int64": (pa.int64(), "bigint"), "float": (pa.float64(), "double precision"),
    "time": (_UTC_US, "timestamptz"),
}  # fmt: skip
#: A column name means the same in every table: its kind.
COLUMN_KINDS: dict[str, Kind] = {
    "symbol": "text", "interval_seconds": "int32", "window_start": "time", "window_end": "time",
    "open": "float", "high": "float", "low": "float", "close": "float", "volume": "float",
    "trades": "int64", "vwap": "float", "last_bid": "float", "last_ask": "float",
    "mean_spread": "float", "last_event_time": "time", "written_at": "time",
    "log_return": "float", "volatility": "float", "ticks": "int64", "sma_20": "float",
    "ema_20": "float", "rsi_14": "float", "macd": "float", "macd_signal": "float",
    "macd_hist": "float", "state": "text", "m2": "float",
}  # fmt: skip


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    #: Columns that may hold null (all others are NOT NULL).
    nullable: frozenset[str] = field(default_factory=frozenset)
    #: Among rows with the same key in one batch, the one with the latest of this column wins.
    version_column: str = "written_at"

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS``, valid in PostgreSQL and DuckDB."""
        width = max(len(c) for c in self.columns)
        lines = [
            f"{c:<{width}} {KINDS[COLUMN_KINDS[c]][1]}{'' if c in self.nullable else ' NOT NULL'}"
            for c in self.columns
        ]
        lines.append(f"PRIMARY KEY ({', '.join(self.key)})")
        body = ",\n    ".join(lines)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {body}\n)"


BARS = TableSpec(
    "bars",
    ("symbol", "interval_seconds", "window_start", "window_end", "open", "high", "low", "close",
     "volume", "trades", "vwap", "last_bid", "last_ask", "mean_spread", "last_event_time",
     "written_at"),
    ("symbol", "interval_seconds", "window_start"),
    frozenset({"volume", "vwap", "last_bid", "last_ask", "mean_spread"}),
)  # fmt: skip
WINDOW_FEATURES = TableSpec(
    "window_features",
    ("symbol", "window_start", "window_end", "log_return", "volatility", "ticks",
     "last_event_time", "written_at"),
    ("symbol", "window_start", "window_end"),
    frozenset({"log_return", "volatility"}),
)  # fmt: skip
INDICATORS = TableSpec(
    "indicators",
    ("symbol", "window_start", "close", "sma_20", "ema_20", "rsi_14", "macd", "macd_signal",
     "macd_hist", "state", "written_at"),
    ("symbol", "window_start"),
    frozenset({"sma_20", "ema_20", "rsi_14", "macd", "macd_signal", "macd_hist"}),
)  # fmt: skip

#: What sliding windows are made of: tumbling buckets of gcd(length, slide) seconds, each with
#: the sum of squared deviations (``m2``) of the log returns between its consecutive ticks.
WINDOW_BUCKETS = TableSpec(
    "window_buckets",
    ("symbol", "interval_seconds", "window_start", "window_end", "open", "close", "trades",
     "m2", "last_event_time", "written_at"),
    ("symbol", "interval_seconds", "window_start"),
)  # fmt: skip

FEATURE_TABLES = (BARS, WINDOW_FEATURES, INDICATORS, WINDOW_BUCKETS)

#: How far the features query has exported closed windows, per checkpoint and micro-batch
#: (``migrations.progress_ddl``; written and read by the hot sinks, see ``job.advance``).
PROGRESS_TABLE = "feature_progress"

#: Arrow types of the feature tables' columns.
ARROW_TYPES: dict[str, pa.DataType] = {c: KINDS[k][0] for c, k in COLUMN_KINDS.items()}


def rows_ending_sql(table: TableSpec, placeholder: str) -> str:
    """The rows of windows that end in ``(after, upto]`` and start at or after ``since`` (three
    parameters): the start bound lets TimescaleDB skip chunks (hypertables are partitioned by
    window_start), ``window_end`` has an index of its own (migration 5)."""
    cols, key = ", ".join(table.columns), ", ".join(table.key)
    return (
        f"SELECT {cols} FROM {table.name} WHERE window_end > {placeholder} "
        f"AND window_end <= {placeholder} AND window_start >= {placeholder} ORDER BY {key}"
    )


@dataclass(frozen=True)
class ProgressSQL:
    """The export-progress statements in one driver's parameter style."""

    #: (checkpoint, batch_id) -> the row of the latest batch before: max_event_us,
    #: exported_to_us, closed_to_us (a row from before migration 6: exported_to_us)
    before: str
    #: (checkpoint, batch_id, max_event_us, exported_to_us, closed_to_us): insert, or overwrite
    #: on a replay
    record: str
    #: (checkpoint, oldest batch kept): forget the rows before it
    prune: str


def progress_sql(p: str) -> ProgressSQL:
    """The statements with ``p`` as the parameter placeholder (``?`` or ``%s``)."""
    return ProgressSQL(
        before="SELECT max_event_us, exported_to_us, coalesce(closed_to_us, exported_to_us) "
        f"FROM {PROGRESS_TABLE} WHERE checkpoint = {p} AND batch_id < {p} "
        "ORDER BY batch_id DESC LIMIT 1",
        record=f"INSERT INTO {PROGRESS_TABLE} "
        "(checkpoint, batch_id, max_event_us, exported_to_us, closed_to_us) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}) "
        "ON CONFLICT (checkpoint, batch_id) DO UPDATE SET max_event_us = excluded.max_event_us, "
        "exported_to_us = excluded.exported_to_us, closed_to_us = excluded.closed_to_us",
        prune=f"DELETE FROM {PROGRESS_TABLE} WHERE checkpoint = {p} AND batch_id < {p}",
    )


#: What a micro-batch of the features query recorded (``progress.Progress``): max_event_us,
#: exported_to_us, closed_to_us.
Recorded = tuple[int, int, int]

#: Progress rows kept per checkpoint (a replay needs only the one before it).
PROGRESS_KEPT = 100


def arrow_schema(table: TableSpec) -> pa.Schema:
    """The table's columns as Arrow types: what its cold Parquet files hold."""
    return pa.schema([(c, ARROW_TYPES[c]) for c in table.columns])


def check_columns(where: str, table: TableSpec, present: Iterable[str], fix: str) -> None:
    have = set(present)
    missing = [c for c in table.columns if c not in have]
    if missing:
        raise SchemaMismatch(f"{where}: table {table.name} lacks columns {missing}: {fix}")
