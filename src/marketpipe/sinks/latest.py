"""The newest feature rows per symbol in a hot sink (``marketpipe latest``, the demo)."""

from __future__ import annotations

from typing import Any

from marketpipe.settings import Settings

QUERIES = {
    "bars (1 min)": "SELECT DISTINCT ON (symbol) symbol, window_start, open, high, low, close, "
    "volume, trades, vwap, mean_spread FROM bars WHERE interval_seconds = 60 "
    "ORDER BY symbol, window_start DESC",
    "window features": "SELECT DISTINCT ON (symbol) symbol, window_start, window_end, "
    "log_return, volatility, ticks FROM window_features ORDER BY symbol, window_end DESC",
    "indicators (closed 1 min bars)": "SELECT DISTINCT ON (symbol) symbol, window_start, close, "
    "sma_20, ema_20, rsi_14, macd, macd_signal, macd_hist FROM indicators "
    "ORDER BY symbol, window_start DESC",
}


Result = tuple[list[str], list[tuple[Any, ...]]]


def run_queries(settings: Settings, sink: str, queries: dict[str, str]) -> dict[str, Result]:
    """Per named query: column names and rows, from DuckDB (read-only) or PostgreSQL."""
    out = {}
    if sink == "postgres":
        import psycopg

        with psycopg.connect(settings.postgres.conninfo(), connect_timeout=10) as conn:
            for title, sql in queries.items():
                cur = conn.execute(sql)
                out[title] = ([d.name for d in cur.description or []], cur.fetchall())
        return out
    import duckdb

    con = duckdb.connect(settings.features.duckdb_path, read_only=True)
    try:
        for title, sql in queries.items():
            result = con.execute(sql)
            out[title] = ([d[0] for d in result.description or []], result.fetchall())
    finally:
        con.close()
    return out


def latest_tables(settings: Settings, sink: str) -> dict[str, Result]:
    """The queries above: the newest rows per symbol of each feature table."""
    return run_queries(settings, sink, QUERIES)


COUNTED_TABLES = ("bars", "window_features", "indicators")


def row_counts(settings: Settings, sink: str) -> dict[str, int]:
    """Rows per feature table in a hot sink (the smoke check)."""
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in COUNTED_TABLES)
    _, rows = run_queries(settings, sink, {"counts": sql})["counts"]
    return {name: int(n) for name, n in rows}


def render(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    """A plain text table; floats to 6 significant digits, times without the date."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "strftime"):
        return str(value.strftime("%H:%M:%S"))
    return str(value)
