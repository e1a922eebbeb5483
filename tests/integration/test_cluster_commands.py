"""The commands the Helm chart runs besides the services: `fetch` (the replay Job's input from
the object store) and `smoke` (`helm test`, `make smoke`), against the real local services."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.objectstore import s3_client
from marketpipe.settings import Settings
from marketpipe.sinks.migrations import migrate
from marketpipe.sinks.parquet import ParquetSink
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import BARS, WINDOW_FEATURES
from tests.featurerows import T0, bar
from tests.integration.helpers import run_cli

pytestmark = pytest.mark.integration


def test_fetch_copies_a_prefix_keeping_paths(services: Settings, tmp_path: Path) -> None:
    client = s3_client(services.s3)
    prefix = f"fetch-{uuid.uuid4().hex[:8]}"
    objects = {"a.csv": b"x,y\n1,2\n", "day=1/b.csv.gz": b"\x1f\x8b...", "day=1/c.parquet": b"P"}
    for key, body in objects.items():
        client.put_object(Bucket=services.s3.bucket, Key=f"{prefix}/{key}", Body=body)
    client.put_object(Bucket=services.s3.bucket, Key=f"{prefix}-other/x.csv", Body=b"no")

    done = run_cli(services, "fetch", f"s3://{services.s3.bucket}/{prefix}", str(tmp_path / "in"))
    assert done.returncode == 0, done.stderr
    assert "fetched 3 objects" in done.stdout
    got = {str(p.relative_to(tmp_path / "in")): p.read_bytes()
           for p in (tmp_path / "in").rglob("*") if p.is_file()}  # fmt: skip
    assert got == objects  # the sibling prefix "<prefix>-other" is not under "<prefix>/"


def test_fetch_of_nothing_or_a_bad_url_says_so(services: Settings, tmp_path: Path) -> None:
    empty = run_cli(services, "fetch", f"s3://{services.s3.bucket}/no-such-{uuid.uuid4().hex}",
                    str(tmp_path))  # fmt: skip
    assert empty.returncode == 1
    assert "nothing under" in empty.stderr
    bad = run_cli(services, "fetch", "/not/an/url", str(tmp_path))
    assert bad.returncode == 2
    assert "not an s3:// URL" in bad.stderr


def test_smoke_fails_until_features_and_raw_ticks_arrive(database: Settings) -> None:
    root = f"s3://{database.s3.bucket}/smoke-{uuid.uuid4().hex[:8]}"
    settings = database.model_copy(
        update={"features": database.features.model_copy(
            update={"sinks": ["postgres"], "archive_root": root})}
    )  # fmt: skip
    args = ("smoke", "--timeout", "0")
    before = run_cli(settings, *args)
    assert before.returncode == 1
    assert 'relation "bars" does not exist' in before.stderr
    assert "no raw tick files yet" in before.stderr

    migrate(settings.postgres.conninfo())
    sink = PostgresSink(settings.postgres)
    sink.upsert(BARS, [bar("AAPL", 0, 100.0)])
    empty_features = run_cli(settings, *args)
    assert "window_features has 0 rows (want >= 1)" in empty_features.stderr
    end = T0 + timedelta(seconds=60)
    sink.upsert(WINDOW_FEATURES, [("AAPL", T0, end, 0.01, 0.002, 10, end, end)])
    sink.close()
    tick = pa.table({"symbol": ["AAPL"], "event_time": [1_709_908_200_000_000], "price": [1.0]})
    ParquetSink(root, settings.s3).write("raw", 0, tick, "event_time")

    after = run_cli(settings, *args)
    assert after.returncode == 0, after.stderr
    assert "bars 1 rows, window_features 1 rows, indicators 0 rows" in after.stdout
    assert "raw 1 files" in after.stdout


def test_bucket_is_created_once(services: Settings) -> None:
    name = f"mp-{uuid.uuid4().hex[:12]}"
    settings = services.model_copy(update={"s3": services.s3.model_copy(update={"bucket": name})})
    first = run_cli(settings, "bucket")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"created bucket {name}"
    again = run_cli(settings, "bucket")
    assert again.stdout.strip() == f"bucket {name} exists"
    assert name in {b["Name"] for b in s3_client(settings.s3).list_buckets()["Buckets"]}
