"""The production images (Redpanda, TimescaleDB, MinIO) through testcontainers, where Docker runs.

Used by the test suite with ``--stack=docker`` (or ``auto`` when a Docker engine answers): the same
settings variables come out as from the process stack, so tests do not care which one runs.
"""

from __future__ import annotations

import secrets
from typing import Any

from marketpipe.local.process import ServiceError
from marketpipe.settings import Settings

REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.2.7"
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.17.2-pg16"
MINIO_IMAGE = "minio/minio:RELEASE.2024-10-13T13-34-11Z"


def docker_available() -> bool:
    """True when a Docker engine answers a ping (testcontainers would fail fast otherwise)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:  # any failure means no usable engine
        return False
    return True


class ContainerStack:
    """Starts the three containers; ``env()`` gives the settings variables pointing at them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._containers: list[Any] = []
        self._env: dict[str, str] = {}

    def up(self) -> dict[str, str]:
        try:
            from testcontainers.community.kafka import RedpandaContainer
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.wait_strategies import HttpWaitStrategy
            from testcontainers.postgres import PostgresContainer
        except ImportError as exc:
            raise ServiceError(
                "the docker stack needs testcontainers: pip install -e '.[dev]'"
            ) from exc

        password = secrets.token_urlsafe(18)
        access_key, secret_key = "mp" + secrets.token_hex(8), secrets.token_urlsafe(24)
        redpanda = RedpandaContainer(REDPANDA_IMAGE)
        postgres = PostgresContainer(
            TIMESCALEDB_IMAGE,
            username="marketpipe",
            password=password,
            dbname=self.settings.postgres.database,
            driver=None,
        )
        minio = (
            DockerContainer(
                MINIO_IMAGE, _wait_strategy=HttpWaitStrategy(9000, "/minio/health/live")
            )
            .with_exposed_ports(9000)
            .with_env("MINIO_ROOT_USER", access_key)
            .with_env("MINIO_ROOT_PASSWORD", secret_key)
            .with_command("server /data --address :9000")
        )
        for container in (redpanda, postgres, minio):
            container.start()
            self._containers.append(container)
        self._env = {
            "MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS": redpanda.get_bootstrap_server(),
            "MARKETPIPE_POSTGRES__HOST": postgres.get_container_host_ip(),
            "MARKETPIPE_POSTGRES__PORT": str(postgres.get_exposed_port(5432)),
            "MARKETPIPE_POSTGRES__USER": "marketpipe",
            "MARKETPIPE_POSTGRES__PASSWORD": password,
            "MARKETPIPE_POSTGRES__DATABASE": self.settings.postgres.database,
            "MARKETPIPE_POSTGRES__SSLMODE": "disable",
            "MARKETPIPE_S3__ENDPOINT_URL": (
                f"http://{minio.get_container_host_ip()}:{minio.get_exposed_port(9000)}"
            ),
            "MARKETPIPE_S3__ACCESS_KEY_ID": access_key,
            "MARKETPIPE_S3__SECRET_ACCESS_KEY": secret_key,
            "MARKETPIPE_S3__BUCKET": self.settings.s3.bucket,
        }
        return self._env

    def down(self) -> None:
        while self._containers:
            self._containers.pop().stop()
