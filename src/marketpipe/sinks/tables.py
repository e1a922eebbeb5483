"""The feature tables as the sinks see them: columns in write order and the upsert key.
Their DDL lives in ``migrations.table_ddl``; a test keeps the two in step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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

FEATURE_TABLES = (BARS, WINDOW_FEATURES, INDICATORS)


def check_columns(where: str, table: TableSpec, present: Iterable[str], fix: str) -> None:
    have = set(present)
    missing = [c for c in table.columns if c not in have]
    if missing:
        raise SchemaMismatch(f"{where}: table {table.name} lacks columns {missing}: {fix}")
