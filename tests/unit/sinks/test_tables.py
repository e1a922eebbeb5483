from __future__ import annotations

import duckdb

from marketpipe.sinks.migrations import table_ddl
from marketpipe.sinks.tables import FEATURE_TABLES


def test_table_specs_match_the_ddl() -> None:
    con = duckdb.connect()
    for statement in table_ddl():
        con.execute(statement)
    for table in FEATURE_TABLES:
        info = con.execute(f"PRAGMA table_info('{table.name}')").fetchall()
        assert tuple(row[1] for row in info) == table.columns
        assert {row[1] for row in info if row[5]} == set(table.key)  # primary key columns
