"""``marketpipe validate``: recompute bars and window features from the raw archive with DuckDB,
independently of Spark, and compare them with what a hot sink holds.

Compared: windows with ``window_start >= start`` and ``window_end <= cutoff``, where the cutoff
is ``end`` or, if earlier, the newest archived tick minus the watermark delay (later windows may
still be open in the stream). Reported per table: rows compared, missing (expected, not in the
sink), extra (in the sink, not expected), differing (any column; floats to a relative 1e-9),
a few examples of each, and latency percentiles (``written_at - last_event_time``) of the rows
in range. Any mismatch makes the command exit non-zero.

The SQL restates the definitions in ``aggregate.py``: open/close and last bid/ask by
``(event_time, seq)``; VWAP over sized ticks; sliding windows ``[s, s + L)`` for every
``s = floor(t / S) * S - k * S`` containing ``t``; volatility the sample standard deviation of
consecutive log returns within a window, null below 3 ticks.

Indicators are recomputed over the recomputed closes of the indicators' bars, each symbol
continued from the state the sink stored with its last row before the range (as the job
does), with ``indicators.py``'s definitions: what this checks is the streaming path (every
closed bar reached the series once, in order, across micro-batches, restarts and the state
carried between them), not the formulas, which have tests of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from marketpipe.features.indicators import extend_series
from marketpipe.settings import Settings
from marketpipe.sinks.migrations import table_ddl
from marketpipe.sinks.parquet import read_archive
from marketpipe.sinks.tables import BARS, INDICATORS, WINDOW_FEATURES, TableSpec

US = 1_000_000
FLOAT_TOLERANCE = 1e-9
EXAMPLES = 3
_ORDER = "{'t': event_time, 's': seq}"
_TIMES = ("window_start", "window_end", "last_event_time")
_FLOATS = {"open", "high", "low", "close", "volume", "vwap", "last_bid", "last_ask",
           "mean_spread", "log_return", "volatility", "sma_20", "ema_20", "rsi_14", "macd",
           "macd_signal", "macd_hist"}  # fmt: skip
#: Not compared: when a row was written, and the indicators' state (its values are).
_NOT_COMPARED = {"written_at", "state"}


def bars_sql(interval_s: int) -> str:
    w = interval_s * US
    return f"""
        SELECT symbol, {interval_s} AS interval_seconds,
               event_time - event_time % {w} AS window_start,
               event_time - event_time % {w} + {w} AS window_end,
               arg_min(price, {_ORDER}) AS open, max(price) AS high, min(price) AS low,
               arg_max(price, {_ORDER}) AS close, sum(size) AS volume, count(*) AS trades,
               sum(price * size) / sum(size) AS vwap,
               arg_max(bid, {_ORDER}) AS last_bid, arg_max(ask, {_ORDER}) AS last_ask,
               avg(ask - bid) AS mean_spread, max(event_time) AS last_event_time
        FROM ticks GROUP BY ALL"""


def window_features_sql(length_s: int, slide_s: int) -> str:
    length, slide = length_s * US, slide_s * US
    return f"""
        WITH w AS (
            SELECT t.*, event_time - event_time % {slide} - k * {slide} AS ws
            FROM ticks t CROSS JOIN range(0, {math.ceil(length_s / slide_s)}) r(k)
            WHERE event_time < event_time - event_time % {slide} - k * {slide} + {length}
        ), r AS (
            SELECT *, ln(price / lag(price) OVER (
                PARTITION BY symbol, ws ORDER BY event_time, seq)) AS lr
            FROM w
        )
        SELECT symbol, ws AS window_start, ws + {length} AS window_end,
               ln(arg_max(price, {_ORDER}) / arg_min(price, {_ORDER})) AS log_return,
               CASE WHEN count(*) >= 3 THEN stddev_samp(lr) END AS volatility,
               count(*) AS ticks, max(event_time) AS last_event_time
        FROM r GROUP BY symbol, ws"""


@dataclass
class TableCheck:
    table: str
    compared: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    examples: list[str] = field(default_factory=list)
    latency_s: tuple[float, float, float] | None = None  # p50, p99, max

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing)


@dataclass
class ValidationReport:
    ticks: int
    cutoff: datetime | None
    checks: list[TableCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        """The ``--output json`` shape."""
        return {
            "ok": self.ok,
            "ticks": self.ticks,
            "cutoff": self.cutoff,
            "checks": [
                {
                    "table": c.table, "ok": c.ok, "expected": c.compared, "missing": c.missing,
                    "extra": c.extra, "differing": c.differing, "examples": c.examples,
                    "latency_s": None if c.latency_s is None
                    else dict(zip(("p50", "p99", "max"), c.latency_s, strict=True)),
                }
                for c in self.checks
            ],
        }  # fmt: skip

    def lines(self) -> list[str]:
        until = self.cutoff.isoformat() if self.cutoff else "-"
        out = [f"archived ticks in range: {self.ticks:,}; windows compared up to {until}"]
        for c in self.checks:
            verdict = "OK" if c.ok else "MISMATCH"
            out.append(
                f"{c.table}: {verdict}: {c.compared:,} expected rows, {c.missing:,} missing, "
                f"{c.extra:,} extra, {c.differing:,} differing"
            )
            out += [f"  {e}" for e in c.examples]
            if c.latency_s:
                p50, p99, worst = c.latency_s
                out.append(
                    f"  latency (written_at - last_event_time): p50 {p50:.3f} s, "
                    f"p99 {p99:.3f} s, max {worst:.3f} s"
                )
        out.append("verdict: " + ("OK, the sink matches the archive" if self.ok else "MISMATCH"))
        return out


_PRIORS = (
    "SELECT DISTINCT ON (symbol) symbol, state FROM {schema}indicators "
    "WHERE window_start < {p} ORDER BY symbol, window_start DESC"
)


def load_sink(
    con: duckdb.DuckDBPyConnection, settings: Settings, sink: str, start: datetime
) -> dict[str, str]:
    """Copy the sink's bars, window features and indicators from ``start`` on into ``con``
    (same DDL); returns each symbol's indicator state before ``start``."""
    tables = (BARS, WINDOW_FEATURES, INDICATORS)
    if sink == "duckdb":
        path = settings.features.duckdb_path.replace("'", "''")
        con.execute(f"ATTACH '{path}' AS sink (READ_ONLY)")
        for t in tables:
            con.execute(
                f"CREATE TABLE {t.name} AS SELECT * FROM sink.{t.name} WHERE window_start >= ?",
                [start],
            )
        priors = con.execute(_PRIORS.format(schema="sink.", p="?"), [start]).fetchall()
        con.execute("DETACH sink")
        return dict(priors)
    import psycopg

    for statement in table_ddl():
        con.execute(statement)
    with psycopg.connect(settings.postgres.conninfo(), connect_timeout=10) as pg:
        for t in tables:
            cols = ", ".join(t.columns)
            rows = pg.execute(
                f"SELECT {cols} FROM {t.name} WHERE window_start >= %s", (start,)
            ).fetchall()
            schema = con.sql(f"SELECT {cols} FROM {t.name} LIMIT 0").to_arrow_table().schema
            batch = pa.Table.from_pylist(
                [dict(zip(t.columns, r, strict=True)) for r in rows], schema=schema
            )
            con.register("pg_rows", batch)
            con.execute(f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM pg_rows")
            con.unregister("pg_rows")
        return dict(pg.execute(_PRIORS.format(schema="", p="%s"), (start,)).fetchall())


def _compare(
    con: duckdb.DuckDBPyConnection, table: TableSpec, cutoff_us: int, end: str = "window_end"
) -> TableCheck:
    """Expected rows (table ``expected``, times in epoch µs, a ``window_end``) against the
    sink's (``table``), windows ending by the cutoff; ``end`` is the sink rows' end."""
    check = TableCheck(table.name)
    cols = [c for c in table.columns if c not in _NOT_COMPARED]
    key = " AND ".join(f"e.{k} = a.{k}" for k in table.key)
    in_range = f"window_end <= {cutoff_us}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW e AS SELECT * FROM expected WHERE {in_range}")
    con.execute(
        "CREATE OR REPLACE TEMP VIEW a AS SELECT "
        + ", ".join(f"epoch_us({c}) AS {c}" if c in _TIMES else c for c in cols)
        + f" FROM {table.name} WHERE epoch_us({end}) <= {cutoff_us}"
    )
    differs = " OR ".join(
        f"NOT (e.{c} IS NOT DISTINCT FROM a.{c} OR abs(e.{c} - a.{c}) <= "
        f"{FLOAT_TOLERANCE} * greatest(abs(e.{c}), abs(a.{c})) + 1e-12)"
        if c in _FLOATS
        else f"e.{c} IS DISTINCT FROM a.{c}"
        for c in cols
        if c not in table.key
    )
    keys = ", ".join(f"coalesce(e.{k}, a.{k}) AS {k}" for k in table.key)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE verdicts AS SELECT {keys}, "
        f"CASE WHEN a.{table.key[0]} IS NULL THEN 'missing' "
        f"WHEN e.{table.key[0]} IS NULL THEN 'extra' "
        f"WHEN {differs} THEN 'differing' ELSE 'ok' END AS verdict "
        f"FROM e FULL OUTER JOIN a ON {key}"
    )
    counts = dict(con.execute("SELECT verdict, count(*) FROM verdicts GROUP BY 1").fetchall())
    check.compared = int(con.execute("SELECT count(*) FROM e").fetchone()[0])  # type: ignore[index]
    check.missing, check.extra = counts.get("missing", 0), counts.get("extra", 0)
    check.differing = counts.get("differing", 0)
    for verdict, *key_values in con.execute(
        f"SELECT verdict, {', '.join(table.key)} FROM verdicts WHERE verdict <> 'ok' "
        f"ORDER BY ALL LIMIT {EXAMPLES}"
    ).fetchall():
        shown = ", ".join(f"{k}={_show(k, v)}" for k, v in zip(table.key, key_values, strict=True))
        check.examples.append(f"{verdict}: {shown}")
    if "last_event_time" not in table.columns:
        return check
    lat = con.execute(
        "SELECT quantile_cont(s, 0.5), quantile_cont(s, 0.99), max(s) FROM ("
        f"SELECT epoch_us(written_at - last_event_time) / 1e6 AS s FROM {table.name})"
    ).fetchone()
    if lat and lat[0] is not None:
        check.latency_s = (float(lat[0]), float(lat[1]), float(lat[2]))
    return check


def _compare_indicators(
    con: duckdb.DuckDBPyConnection, interval_s: int, start_us: int, cutoff_us: int,
    priors: dict[str, str],
) -> TableCheck:  # fmt: skip
    """The indicators over the recomputed closed bars of their interval, continued from the
    sink's state before the range."""
    closes = con.execute(
        f"SELECT symbol, window_start, close FROM ({bars_sql(interval_s)}) "
        f"WHERE window_start >= {start_us} AND window_end <= {cutoff_us}"
    ).fetchall()
    rows = extend_series(closes, priors)
    names = [c for c in INDICATORS.columns if c != "written_at"]
    types = {"symbol": pa.string(), "window_start": pa.int64(), "state": pa.string()}
    schema = pa.schema([(n, types.get(n, pa.float64())) for n in names])
    expected = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows], schema)
    con.register("expected_rows", expected)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE expected AS SELECT *, "
        f"window_start + {interval_s * US} AS window_end FROM expected_rows"
    )
    con.unregister("expected_rows")
    return _compare(con, INDICATORS, cutoff_us, f"window_start + INTERVAL {interval_s} SECOND")


def _show(key: str, value: object) -> str:
    if key in _TIMES and isinstance(value, int):
        return datetime.fromtimestamp(value / US, UTC).isoformat()
    return str(value)


def validate(
    settings: Settings, start_us: int, end_us: int, sink: str | None = None
) -> ValidationReport:
    cfg = settings.features
    chosen = sink or cfg.hot_sink
    ticks = read_archive(cfg.archive_root, settings.s3, start_us, end_us)
    con = duckdb.connect()
    try:
        con.register("ticks", ticks)
        newest = con.execute("SELECT max(event_time) FROM ticks").fetchone()
        if not newest or newest[0] is None:
            return ValidationReport(0, None, [])
        cutoff_us = min(end_us, int(newest[0]) - int(cfg.watermark_s * US))
        priors = load_sink(con, settings, chosen, datetime.fromtimestamp(start_us / US, UTC))
        expectations = [
            (BARS, " UNION ALL ".join(bars_sql(n) for n in cfg.bar_intervals_s)),
            (WINDOW_FEATURES, window_features_sql(cfg.window_length_s, cfg.window_slide_s)),
        ]
        checks = []
        for table, sql in expectations:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE expected AS SELECT * FROM ({sql}) "
                f"WHERE window_start >= {start_us}"
            )
            checks.append(_compare(con, table, cutoff_us))
        checks.append(
            _compare_indicators(con, cfg.indicator_interval_s, start_us, cutoff_us, priors)
        )
        return ValidationReport(ticks.num_rows, datetime.fromtimestamp(cutoff_us / US, UTC), checks)
    finally:
        con.close()
