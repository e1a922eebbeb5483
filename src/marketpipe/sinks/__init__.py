"""Where features land: PostgreSQL/TimescaleDB (hot), Parquet on S3 (cold), DuckDB (embedded)."""
