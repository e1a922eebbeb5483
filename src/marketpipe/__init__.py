"""marketpipe: a realtime market-data pipeline (ingest, quality gate, features, storage)."""

__version__ = "0.1.0"
