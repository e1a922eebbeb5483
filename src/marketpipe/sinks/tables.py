"""The feature tables as the sinks see them: columns in write order and the upsert key.
Their DDL lives in ``migrations.table_ddl``; a test keeps the two in step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from marketpipe.settings import ConfigError


class SchemaMismatch(ConfigError):
    """A sink's table lacks columns this version writes (created by an older marketpipe)."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    #: Among rows with the same key in one batch, the one with the latest of this column wins.
    version_column: str = "written_at"


BARS = TableSpec(
    "bars",
    ("symbol", "interval_seconds", "window_start", "window_end", "open", "high", "low", "close",
     "volume", "trades", "vwap", "last_bid", "last_ask", "mean_spread", "last_event_time",
     "written_at"),
    ("symbol", "interval_seconds", "window_start"),
)  # fmt: skip
WINDOW_FEATURES = TableSpec(
    "window_features",
    ("symbol", "window_start", "window_end", "log_return", "volatility", "ticks",
     "last_event_time", "written_at"),
    ("symbol", "window_start", "window_end"),
)  # fmt: skip
INDICATORS = TableSpec(
    "indicators",
    ("symbol", "window_start", "close", "sma_20", "ema_20", "rsi_14", "macd", "macd_signal",
     "macd_hist", "state", "written_at"),
    ("symbol", "window_start"),
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

_UTC_US = pa.timestamp("us", tz="UTC")
#: Arrow types of the feature tables' columns (a column name means the same in every table).
ARROW_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.string(), "interval_seconds": pa.int32(), "window_start": _UTC_US,
    "window_end": _UTC_US, "open": pa.float64(), "high": pa.float64(), "low": pa.float64(),
    "close": pa.float64(), "volume": pa.float64(), "trades": pa.int64(), "vwap": pa.float64(),
    "last_bid": pa.float64(), "last_ask": pa.float64(), "mean_spread": pa.float64(),
    "last_event_time": _UTC_US, "written_at": _UTC_US, "log_return": pa.float64(),
    "volatility": pa.float64(), "ticks": pa.int64(), "sma_20": pa.float64(),
    "ema_20": pa.float64(), "rsi_14": pa.float64(), "macd": pa.float64(),
    "macd_signal": pa.float64(), "macd_hist": pa.float64(), "state": pa.string(),
    "m2": pa.float64(),
}  # fmt: skip


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

    #: (checkpoint, batch_id) -> the row of the latest batch before: max_event_us, exported_to_us
    before: str
    #: (checkpoint, batch_id, max_event_us, exported_to_us): insert, or overwrite on a replay
    record: str
    #: (checkpoint, oldest batch kept): forget the rows before it
    prune: str


def progress_sql(p: str) -> ProgressSQL:
    """The statements with ``p`` as the parameter placeholder (``?`` or ``%s``)."""
    return ProgressSQL(
        before=f"SELECT max_event_us, exported_to_us FROM {PROGRESS_TABLE} WHERE checkpoint = "
        f"{p} AND batch_id < {p} ORDER BY batch_id DESC LIMIT 1",
        record=f"INSERT INTO {PROGRESS_TABLE} VALUES ({p}, {p}, {p}, {p}) "
        "ON CONFLICT (checkpoint, batch_id) DO UPDATE SET max_event_us = excluded.max_event_us, "
        "exported_to_us = excluded.exported_to_us",
        prune=f"DELETE FROM {PROGRESS_TABLE} WHERE checkpoint = {p} AND batch_id < {p}",
    )


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
