"""A failure a user can act on is one line on stderr, soon, naming what was not there and the
command that fixes it; and a command that only reads creates nothing. Run as a user runs them:
the CLI in a fresh folder, with nothing started or with the endpoints pointing nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketpipe.local.process import free_port
from marketpipe.settings import Settings
from tests.integration.helpers import run_cli


def run_here(
    folder: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI in ``folder`` with the environment the user gave (no endpoints file)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPIPE_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "marketpipe", *args], env={**clean, **env}, cwd=folder,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done, time.monotonic() - started


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_no_broker_is_one_line_within_the_connect_timeout(tmp_path: Path) -> None:
    port = free_port()
    done, took = run_here(
        tmp_path, "topics", MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        MARKETPIPE_KAFKA__CONNECT_TIMEOUT_S="3",
    )  # fmt: skip
    assert done.returncode == 3
    line = one_line(done)
    assert f"Kafka broker at 127.0.0.1:{port} did not answer within 3s" in line
    assert "marketpipe local up" in line
    assert "KafkaError{" not in line  # the error's words, not its repr
    assert took < 3 + 3  # the timeout, plus an interpreter's start


def test_no_database_is_one_line_naming_it(tmp_path: Path) -> None:
    port = free_port()
    env = {"MARKETPIPE_POSTGRES__PORT": str(port), "MARKETPIPE_FEATURES__SINKS": "postgres"}
    done, took = run_here(tmp_path, "latest", **env)
    assert done.returncode == 3
    line = one_line(done)
    assert f"PostgreSQL at 127.0.0.1:{port} is not answering" in line
    assert "marketpipe local up" in line
    assert took < 10


def test_missing_database_and_tables_say_which_command_creates_them(
    tmp_path: Path, services: Settings
) -> None:
    pg = services.postgres.model_copy(update={"database": "never_created"})
    done = run_cli(services.model_copy(update={"postgres": pg}), "db", "migrate", cwd=tmp_path)
    assert done.returncode == 2
    assert "`marketpipe db migrate --create-database` creates it" in one_line(done)
    # A database without the tables (the maintenance one): `latest` says to migrate.
    bare = services.postgres.model_copy(update={"database": "postgres"})
    done = run_cli(services.model_copy(update={"postgres": bare}), "latest", "--sink", "postgres",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 3
    assert "run `marketpipe db migrate`" in one_line(done)


@pytest.mark.parametrize("command", [["latest"], ["cold"], ["validate", "--start", "0s",
                                                               "--end", "1s"]])  # fmt: skip
def test_reading_before_anything_was_written_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    done, _ = run_here(tmp_path, *command)
    assert done.returncode in (1, 3), done.stderr
    line = one_line(done)
    assert "marketpipe features" in line or "no archived ticks" in line
    assert list(tmp_path.iterdir()) == []  # no .marketpipe/ left behind


def test_no_object_store_is_one_line_naming_it(tmp_path: Path) -> None:
    port = free_port()
    done, took = run_here(
        tmp_path, "cold", MARKETPIPE_S3__ENDPOINT_URL=f"http://127.0.0.1:{port}",
        MARKETPIPE_FEATURES__ARCHIVE_ROOT="s3://marketpipe/cold",
    )  # fmt: skip
    assert done.returncode == 3
    line = one_line(done)
    assert f"object store at http://127.0.0.1:{port} is not answering" in line
    assert "marketpipe local up" in line
    assert took < 10
