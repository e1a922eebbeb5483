"""The market-data dashboard's SQL, with Grafana's macros and variables filled in as Grafana
would, against a real PostgreSQL holding the job's tables: every panel's query runs, and those
of one symbol find its rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import psycopg

from marketpipe.settings import Settings
from marketpipe.sinks.migrations import migrate
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import BARS, INDICATORS, WINDOW_FEATURES
from tests.conftest import REPO_ROOT

BOARD = REPO_ROOT / "charts" / "marketpipe" / "files" / "grafana" / "market-data.json"


def grafana_sql(sql: str, symbol: str, interval: int) -> str:
    """$__timeFilter(col) as Grafana's PostgreSQL data source expands it (the last 6 hours),
    and the dashboard's variables."""
    sql = re.sub(
        r"\$__timeFilter\((\w+(?:\.\w+)?)\)",
        r"\1 BETWEEN now() - interval '6 hours' AND now()",
        sql,
    )
    return sql.replace("$symbol", symbol).replace("$interval", str(interval))


def test_every_market_panel_query_runs_and_finds_the_symbol(database: Settings) -> None:
    conninfo = database.postgres.conninfo()
    migrate(conninfo)
    now = datetime.now(UTC).replace(microsecond=0)
    sink = PostgresSink(database.postgres)
    try:
        for i in range(3):
            start = now - timedelta(minutes=3 - i)
            end = start + timedelta(minutes=1)
            sink.upsert(BARS, [("AAA", 60, start, end, 10.0, 11.0, 9.5, 10.5 + i, 100.0, 12,
                                10.2, 10.4, 10.6, 0.2, start, now)])  # fmt: skip
            sink.upsert(INDICATORS, [("AAA", start, 10.5 + i, 10.4, 10.45, 55.0, 0.1, 0.05, 0.05,
                                      "{}", now)])  # fmt: skip
            sink.upsert(WINDOW_FEATURES, [("AAA", start, end, 0.001, 0.02, 12, start, now)])
    finally:
        sink.close()
    board = json.loads(BOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    with psycopg.connect(conninfo) as conn:
        symbols = [r[0] for r in conn.execute(variables["symbol"]["query"]).fetchall()]
        assert symbols == ["AAA"]
        for panel in board["panels"]:
            (target,) = panel["targets"]
            rows = conn.execute(grafana_sql(target["rawSql"], "AAA", 60)).fetchall()
            assert rows, panel["title"]
            assert all(None not in row[:2] for row in rows), panel["title"]
