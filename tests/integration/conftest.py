"""Real services for integration tests, started once per session.

The process stack (noida-db broker, PostgreSQL, SeaweedFS) is the same code as
`marketpipe local up`; with a Docker engine, `--stack=docker` (or auto) starts the production
images through testcontainers instead. If neither works the session errors: never a silent skip.
"""

from __future__ import annotations

import contextlib
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
from marketpipe.settings import LocalSettings, PostgresSettings, Settings, settings_with_env
from tests.integration.helpers import fresh_topic_names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def make_stack_dir() -> Path:
    """A folder the postgres user can reach when tests run as root (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="marketpipe-test-"))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def running_stack(names: list[str] | None = None) -> Iterator[tuple[LocalStack, Settings]]:
    """A local stack of its own (every service, or ``names``) in a fresh folder, and settings
    pointing at it; stopped and removed afterwards."""
    data_dir = make_stack_dir()
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    base = base.model_copy(update={"local": LocalSettings(data_dir=data_dir)})
    stack = LocalStack(base, names)
    try:
        stack.up()  # raises with the service's log tail if anything fails to start
        yield stack, settings_with_env(base, stack.endpoint_env())
    finally:
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings pointing at real, running services."""
    mode = request.config.getoption("--stack")
    if mode == "auto":
        mode = "docker" if docker_available() else "local"
    if mode == "docker":
        base = Settings(_env_file=None)  # type: ignore[call-arg]
        containers = ContainerStack(base)
        try:
            yield settings_with_env(base, containers.up())
        finally:
            containers.down()
        return
    with running_stack() as (_, settings):
        yield settings


@pytest.fixture
def settings(services: Settings) -> Settings:
    """Per-test settings with topics of its own, already created."""
    kafka = fresh_topic_names(services.kafka, partitions=3)
    ensure_topics(kafka, pipeline_topics(kafka))
    return services.model_copy(update={"kafka": kafka})


@contextlib.contextmanager
def fresh_database(pg: PostgresSettings) -> Iterator[PostgresSettings]:
    """A database of its own on ``pg``'s server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = pg.conninfo("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield pg.model_copy(update={"database": name})
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def database(services: Settings) -> Iterator[Settings]:
    """A database of its own per test, dropped afterwards."""
    with fresh_database(services.postgres) as pg:
        yield services.model_copy(update={"postgres": pg})
