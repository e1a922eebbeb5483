"""S3-compatible object storage clients (MinIO in the cluster, SeaweedFS locally, or AWS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketpipe.settings import S3Settings


def s3_client(
    cfg: S3Settings, connect_timeout_s: float = 5.0, retries: int = 3, read_timeout_s: float = 30.0
) -> Any:
    """A boto3 S3 client for ``cfg``; path-style addressing so any endpoint works."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        aws_access_key_id=cfg.access_key_id,
        aws_secret_access_key=(
            cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
        ),
        region_name=cfg.region,
        config=Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": retries, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


def download_prefix(client: Any, url: str, dest: Path) -> tuple[int, int]:
    """Copy every object under ``s3://bucket/prefix`` into ``dest``, keeping the key paths
    below the prefix; returns (objects, bytes). Written to a temporary name, then renamed, so
    a file present in ``dest`` is always complete."""
    bucket, prefix = split_url(url)
    base = prefix.rstrip("/") + "/" if prefix else ""
    count = size = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base) :]
            if not rel or rel.endswith("/"):
                continue
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                raise ValueError(f"object key {obj['Key']!r} escapes {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            client.download_file(bucket, obj["Key"], str(partial))
            partial.replace(target)
            count += 1
            size += int(obj.get("Size", 0))
    return count, size


def ensure_bucket(client: Any, bucket: str, region: str = "us-east-1") -> str:
    """Create ``bucket`` unless it exists; returns what happened (idempotent, race-safe)."""
    from botocore.exceptions import ClientError

    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return f"bucket {bucket} exists"
    extra = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}  # fmt: skip
    try:
        client.create_bucket(Bucket=bucket, **extra)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):  # fmt: skip
            raise
        return f"bucket {bucket} exists (created concurrently)"
    return f"created bucket {bucket}"
