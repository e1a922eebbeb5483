"""What the dashboard reads from a hot store (DuckDB or PostgreSQL), with bounded queries only.

Every query names a symbol (the primary keys lead with it) and a ``LIMIT``, or is bounded by
the newest ``window_end`` (indexed in PostgreSQL), so a day of 1-second bars for many symbols
costs what a few hundred rows cost. The SQL runs unchanged on both stores; ``{p}`` is the
driver's placeholder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from marketpipe.settings import HotSink as Sink
from marketpipe.settings import Settings
from marketpipe.sinks.latest import StoreUnavailable, open_hot_store

__all__ = ["HotStore", "Sink", "StoreUnavailable", "open_store"]

#: The newest hour of bars: where the symbol and interval pickers look.
_RECENT = "window_end >= (SELECT max(window_end) FROM bars) - INTERVAL '1 hour'"
SYMBOLS = f"SELECT DISTINCT symbol FROM bars WHERE {_RECENT} ORDER BY symbol"
INTERVALS = f"SELECT DISTINCT interval_seconds FROM bars WHERE {_RECENT} ORDER BY 1"
BARS = (
    "SELECT window_start, open, high, low, close, volume, vwap, trades FROM bars "
    "WHERE symbol = {p} AND interval_seconds = {p} ORDER BY window_start DESC LIMIT {p}"
)
INDICATORS = (
    "SELECT window_start, close, sma_20, ema_20, rsi_14, macd, macd_signal, macd_hist "
    "FROM indicators WHERE symbol = {p} AND window_start >= {p} "
    "ORDER BY window_start DESC LIMIT {p}"
)
VOLATILITY = (
    "SELECT window_end, volatility, log_return, ticks FROM window_features "
    "WHERE symbol = {p} AND window_end >= {p} ORDER BY window_end DESC LIMIT {p}"
)
_LATENCY = "EXTRACT(EPOCH FROM written_at) - EXTRACT(EPOCH FROM last_event_time)"
#: Per output over the newest five minutes of windows: rows, freshness, latency percentiles.
FRESHNESS = " UNION ALL ".join(
    f"SELECT {name} AS output, count(*) AS rows, max(written_at) AS newest_write, "
    f"max(last_event_time) AS newest_tick, "
    f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {_LATENCY}) AS latency_p50_s, "
    f"percentile_cont(0.99) WITHIN GROUP (ORDER BY {_LATENCY}) AS latency_p99_s "
    f"FROM {table} WHERE window_end >= "
    f"(SELECT max(window_end) FROM {table}) - INTERVAL '5 minutes'{group}"
    for name, table, group in (
        ("'bars ' || interval_seconds || ' s'", "bars", " GROUP BY interval_seconds"),
        ("'window features'", "window_features", ""),
    )
)


@dataclass
class HotStore:
    """One open connection to a hot store; ``frame`` runs a query template."""

    sink: Sink
    con: Any

    def frame(self, template: str, *params: Any) -> pd.DataFrame:
        placeholder = "%s" if self.sink == "postgres" else "?"
        cur = self.con.execute(template.format(p=placeholder), list(params))
        columns = [d[0] for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)

    def symbols(self) -> list[str]:
        return [str(s) for s in self.frame(SYMBOLS)["symbol"]]

    def intervals(self) -> list[int]:
        return [int(i) for i in self.frame(INTERVALS)["interval_seconds"]]

    def bars(self, symbol: str, interval_s: int, limit: int) -> pd.DataFrame:
        """The newest ``limit`` bars, oldest first."""
        return self.frame(BARS, symbol, interval_s, limit).iloc[::-1].reset_index(drop=True)

    def indicators(self, symbol: str, since: datetime, limit: int) -> pd.DataFrame:
        return self.frame(INDICATORS, symbol, since, limit).iloc[::-1].reset_index(drop=True)

    def volatility(self, symbol: str, since: datetime, limit: int) -> pd.DataFrame:
        return self.frame(VOLATILITY, symbol, since, limit).iloc[::-1].reset_index(drop=True)

    def freshness(self) -> pd.DataFrame:
        return self.frame(FRESHNESS)


@contextmanager
def open_store(settings: Settings, sink: Sink) -> Iterator[HotStore]:
    """A read-only connection for one refresh, or StoreUnavailable with the fix."""
    with open_hot_store(settings, sink) as con:
        yield HotStore(sink, con)
