"""S3-compatible object storage clients (MinIO in the cluster, SeaweedFS locally, or AWS)."""

from __future__ import annotations

from typing import Any

from marketpipe.settings import S3Settings


def s3_client(cfg: S3Settings, connect_timeout_s: float = 5.0, retries: int = 3) -> Any:
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
            read_timeout=30,
            retries={"max_attempts": retries, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )
