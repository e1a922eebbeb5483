"""Real services for integration tests, started once per session.

The process stack (noida-db broker, PostgreSQL, SeaweedFS) is the same code as
`marketpipe local up`; with a Docker engine, `--stack=docker` (or auto) starts the production
images through testcontainers instead. If neither works the session errors: never a silent skip.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from marketpipe.kafka import ensure_topics, pipeline_topics
from marketpipe.local.containers import ContainerStack, docker_available
from marketpipe.local.stack import LocalStack
from marketpipe.settings import LocalSettings, Settings, settings_with_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def make_stack_dir() -> Path:
    """A folder the postgres user can reach when tests run as root (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="marketpipe-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings pointing at real, running services."""
    mode = request.config.getoption("--stack")
    if mode == "auto":
        mode = "docker" if docker_available() else "local"
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    if mode == "docker":
        containers = ContainerStack(base)
        try:
            yield settings_with_env(base, containers.up())
        finally:
            containers.down()
        return
    data_dir = make_stack_dir()
    base = base.model_copy(update={"local": LocalSettings(data_dir=data_dir)})
    stack = LocalStack(base)
    try:
        stack.up()  # raises with the service's log tail if anything fails to start
        yield settings_with_env(base, stack.endpoint_env())
    finally:
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def settings(services: Settings) -> Settings:
    """Per-test settings with topics of its own, already created."""
    suffix = uuid.uuid4().hex[:10]
    kafka = services.kafka.model_copy(
        update={
            "topic_raw": f"raw-{suffix}",
            "topic_valid": f"valid-{suffix}",
            "topic_dlq": f"dlq-{suffix}",
            "topic_quality_state": f"state-{suffix}",
            "partitions": 3,
        }
    )
    ensure_topics(kafka, pipeline_topics(kafka))
    return services.model_copy(update={"kafka": kafka})


@pytest.fixture
def database(services: Settings) -> Iterator[Settings]:
    """A database of its own per test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = services.postgres.conninfo("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield services.model_copy(
        update={"postgres": services.postgres.model_copy(update={"database": name})}
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
