"""Parquet cold storage on the real local S3 server (SeaweedFS; MinIO in the cluster)."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.objectstore import s3_client
from marketpipe.settings import Settings
from marketpipe.sinks.parquet import ParquetSink

T0 = 1_709_908_200_000_000  # 2024-03-08 14:30 UTC


def test_batches_land_partitioned_and_a_replay_overwrites(services: Settings) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    root = f"s3://{services.s3.bucket}/{prefix}"
    table = pa.table(
        {
            "symbol": ["AAPL", "AAPL", "MSFT"],
            "window_start": [T0, T0 + 60_000_000, T0],
            "close": [189.5, 189.6, 415.0],
        }
    )
    sink = ParquetSink(root, services.s3)
    sink.write("bars", 3, table, "window_start")
    sink.write("bars", 3, table, "window_start")  # replayed batch
    listing = s3_client(services.s3).list_objects_v2(Bucket=services.s3.bucket, Prefix=prefix)
    keys = sorted(o["Key"] for o in listing.get("Contents", []))
    assert keys == [
        f"{prefix}/bars/date=2024-03-08/symbol=AAPL/part-3.parquet",
        f"{prefix}/bars/date=2024-03-08/symbol=MSFT/part-3.parquet",
    ]
    back = pq.read_table(f"{services.s3.bucket}/{prefix}/bars", filesystem=sink.fs)
    assert sorted(back.column("close").to_pylist()) == [189.5, 189.6, 415.0]
    assert sorted(str(s) for s in back.column("symbol").to_pylist()) == ["AAPL", "AAPL", "MSFT"]
