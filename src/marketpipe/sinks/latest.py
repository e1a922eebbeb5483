"""Reading a hot sink: the newest feature rows per symbol (``marketpipe latest``, the demo),
row counts (``smoke``), and the read-only connection the dashboard uses too."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from marketpipe.runtime import DependencyUnavailable
from marketpipe.settings import HotSink, Settings

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


class StoreUnavailable(DependencyUnavailable):
    """A hot store cannot be read now; the message says why and which command fixes it."""


@contextmanager
def open_hot_store(settings: Settings, sink: HotSink) -> Iterator[Any]:
    """A read-only connection to a hot store (its ``execute(sql, params)`` returns a cursor),
    or StoreUnavailable naming what is missing and how to get it. Reading creates nothing."""
    if sink == "postgres":
        import psycopg

        pg = settings.postgres
        try:
            con = psycopg.connect(pg.conninfo(), connect_timeout=5, autocommit=True)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0].rsplit("failed: ", 1)[-1]
            if "does not exist" in reason:
                raise StoreUnavailable(
                    f"PostgreSQL at {pg.host}:{pg.port}: {reason}: `marketpipe db migrate "
                    "--create-database` creates it"
                ) from exc
            raise StoreUnavailable(
                f"PostgreSQL at {pg.host}:{pg.port} is not answering ({reason}); "
                "`marketpipe local up` starts the local one"
            ) from exc
        try:
            yield _PgReader(con)
        finally:
            con.close()
        return
    import duckdb

    path = Path(settings.features.duckdb_path)
    if not path.exists():
        raise StoreUnavailable(
            f"no DuckDB file at {path} yet: the features job creates it (`marketpipe features`)"
        )
    try:
        db = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise StoreUnavailable(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc
        raise StoreUnavailable(
            f"a running features job holds {path} (DuckDB lets no other process read a file "
            "while one writes it): read PostgreSQL instead (--sink postgres, with postgres "
            "among MARKETPIPE_FEATURES__SINKS)"
        ) from exc
    try:
        yield db
    finally:
        db.close()


class _PgReader:
    """psycopg's connection, a missing table turned into the command that creates it."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg

        try:
            return self._con.execute(sql, params)
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable(
                f"PostgreSQL has no feature tables yet ({exc.diag.message_primary}): "
                "run `marketpipe db migrate`"
            ) from exc


def run_queries(settings: Settings, sink: HotSink, queries: dict[str, str]) -> dict[str, Result]:
    """Per named query: column names and rows, from DuckDB (read-only) or PostgreSQL."""
    out = {}
    with open_hot_store(settings, sink) as con:
        for title, sql in queries.items():
            cur = con.execute(sql)
            out[title] = ([d[0] for d in cur.description or []], cur.fetchall())
    return out


def latest_tables(settings: Settings, sink: HotSink) -> dict[str, Result]:
    """The queries above: the newest rows per symbol of each feature table."""
    return run_queries(settings, sink, QUERIES)


COUNTED_TABLES = ("bars", "window_features", "indicators")


def row_counts(settings: Settings, sink: HotSink) -> dict[str, int]:
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
