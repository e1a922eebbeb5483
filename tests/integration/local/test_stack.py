"""`marketpipe local up|status|down` on a stack of its own, twice in a row."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from marketpipe.cli import main
from marketpipe.kafka import Publisher, read_to_end
from marketpipe.local.process import ServiceError, pid_alive
from marketpipe.local.services import Secrets
from marketpipe.local.stack import LocalStack
from marketpipe.objectstore import s3_client
from marketpipe.settings import LocalSettings, Settings, load_settings, settings_with_env
from tests.integration.conftest import make_stack_dir


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    path = make_stack_dir()
    yield path
    LocalStack(Settings(_env_file=None, local=LocalSettings(data_dir=path))).down()  # type: ignore[call-arg]
    shutil.rmtree(path, ignore_errors=True)


def write_something(settings: Settings, marker: str) -> None:
    publisher = Publisher(settings.kafka)
    publisher.publish(settings.kafka.topic_raw, [b"k"], [marker.encode()])
    assert publisher.close().ok
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS marks (m text)")
        conn.execute("INSERT INTO marks VALUES (%s)", (marker,))
    s3 = s3_client(settings.s3)
    s3.put_object(Bucket=settings.s3.bucket, Key=f"marks/{marker}", Body=marker.encode())


def read_everything(settings: Settings) -> tuple[list[bytes], list[str], list[str]]:
    on_topic = [m.value() for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        rows = [r[0] for r in conn.execute("SELECT m FROM marks ORDER BY m")]
    s3 = s3_client(settings.s3)
    listing = s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix="marks/")
    keys = sorted(o["Key"] for o in listing.get("Contents", []))
    return on_topic, rows, keys


def test_up_status_down_twice_keeps_data(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARKETPIPE_LOCAL__DATA_DIR", str(stack_dir))
    base = load_settings()
    stack = LocalStack(base)
    assert stack.status() == []  # nothing there yet

    first = stack.up()
    assert [s.name for s in first] == ["kafka", "postgres", "s3"]
    assert all(s.healthy for s in first)
    pids = {s.name: s.pid for s in first}

    # A second up is harmless: same processes, same endpoints.
    endpoints = stack.endpoints_path.read_text()
    again = stack.up()
    assert {s.name: s.pid for s in again} == pids
    assert stack.endpoints_path.read_text() == endpoints
    assert stack.endpoints_path.stat().st_mode & 0o077 == 0  # holds secrets

    # Scripts read the same status as JSON.
    assert main(["local", "status", "--output", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["healthy"] is True
    assert [(s["name"], s["state"], s["pid"]) for s in status["services"]] == [
        (name, "up", pid) for name, pid in pids.items()
    ]

    # Other commands find the services through the endpoints file alone.
    settings = load_settings()
    assert settings.kafka.bootstrap_servers != base.kafka.bootstrap_servers
    write_something(settings, "one")

    expected = {"one": ["one"], "two": ["one", "two"]}
    for round_ in ("one", "two"):
        stopped = stack.down()
        assert stopped == ["stopped s3", "stopped postgres", "stopped kafka"]
        assert not any(pid_alive(p) for p in pids.values())
        assert not stack.endpoints_path.exists()
        assert not any(s.running for s in stack.status())
        assert stack.down() == [
            "s3 was not running",
            "postgres was not running",
            "kafka was not running",
        ]

        restarted = stack.up()
        assert all(s.healthy for s in restarted)
        pids = {s.name: s.pid for s in restarted}
        current = settings_with_env(base, stack.endpoint_env())
        # Ports are reused when free, so clients keep working.
        assert current.kafka.bootstrap_servers == settings.kafka.bootstrap_servers
        on_topic, rows, keys = read_everything(current)
        assert on_topic == [m.encode() for m in expected[round_]]
        assert rows == expected[round_]
        assert keys == [f"marks/{m}" for m in expected[round_]]
        if round_ == "one":
            write_something(current, "two")

    assert stack.down(purge=True)[-1] == f"removed {stack.data_dir}"
    assert not stack.data_dir.exists()


def test_a_dead_service_is_restarted_by_up(stack_dir: Path) -> None:
    settings = Settings(_env_file=None, local=LocalSettings(data_dir=stack_dir, services=["kafka"]))  # type: ignore[call-arg]
    stack = LocalStack(settings)
    (status,) = stack.up()
    assert status.pid
    os.kill(status.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(status.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (after_kill,) = stack.status()
    assert not after_kill.healthy
    (revived,) = stack.up()
    assert revived.healthy
    assert revived.pid != status.pid
    assert revived.detail == status.detail  # same port


def test_unknown_service_is_a_clear_error(stack_dir: Path) -> None:
    settings = Settings(_env_file=None, local=LocalSettings(data_dir=stack_dir))  # type: ignore[call-arg]
    with pytest.raises(ServiceError, match="unknown local services"):
        LocalStack(settings, ["kafka", "redis"])


def test_secrets_are_generated_once(stack_dir: Path) -> None:
    settings = Settings(_env_file=None, local=LocalSettings(data_dir=stack_dir, services=["kafka"]))  # type: ignore[call-arg]
    stack = LocalStack(settings)
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    first: Secrets = stack._secrets()
    assert stack._secrets() == first
    assert (stack.data_dir / "secrets.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("service", ["kafka", "postgres", "s3"])
def test_a_port_taken_before_the_server_binds_it_is_replaced(
    stack_dir: Path, service: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CI once lost a port between choosing it and the server binding it; up must recover."""
    import socket

    from marketpipe.local import services

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    real_pick = services.pick_ports
    handed_out: list[int] = []

    def pick_taken_first(previous: list[int] | None, count: int, wait_s: float = 3.0) -> list[int]:
        ports = real_pick(previous, count, wait_s)
        if not handed_out:
            ports[0] = taken  # the service's main port
        handed_out.extend(ports)
        return ports

    monkeypatch.setattr(services, "pick_ports", pick_taken_first)
    settings = Settings(_env_file=None, local=LocalSettings(data_dir=stack_dir, services=[service]))  # type: ignore[call-arg]
    try:
        started = time.monotonic()
        (status,) = LocalStack(settings).up()
        elapsed = time.monotonic() - started
    finally:
        held.close()
    assert status.healthy
    assert f":{taken}" not in status.detail
    assert handed_out[0] == taken
    assert "lost its port before binding it" in caplog.text
    assert elapsed < settings.local.startup_timeout_s  # the exit was noticed, not waited out
