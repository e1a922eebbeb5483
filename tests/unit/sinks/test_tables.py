"""The feature tables are declared once (tables.py); the DDL and the Arrow schema come from
that declaration, and a real DuckDB (PostgreSQL: tests/integration/sinks/test_postgres.py)
holds what it says: column order, types, nullability and key."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from marketpipe.sinks.migrations import table_ddl
from marketpipe.sinks.tables import COLUMN_KINDS, FEATURE_TABLES, arrow_schema

DUCKDB_TYPES = {"text": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "float": "DOUBLE",
                "time": "TIMESTAMP WITH TIME ZONE"}  # fmt: skip


def test_duckdb_holds_what_the_tables_declare() -> None:
    con = duckdb.connect()
    for statement in table_ddl():
        con.execute(statement)
    for table in FEATURE_TABLES:
        info = con.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position",
            [table.name],
        ).fetchall()
        assert tuple(name for name, _, _ in info) == table.columns
        for name, kind, nullable in info:
            assert kind == DUCKDB_TYPES[COLUMN_KINDS[name]], (table.name, name)
            assert (nullable == "YES") == (name in table.nullable), (table.name, name)
        key = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? "
            "AND constraint_type = 'PRIMARY KEY'",
            [table.name],
        ).fetchone()
        assert key is not None
        assert tuple(key[0]) == table.key


def test_the_arrow_schema_is_the_declaration() -> None:
    for table in FEATURE_TABLES:
        schema = arrow_schema(table)
        assert schema.names == list(table.columns)
        assert table.nullable <= set(table.columns)
        assert set(table.key) <= set(table.columns) - table.nullable
        assert schema.field("window_start").type == pa.timestamp("us", tz="UTC")
