from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path

import pytest

from marketpipe.runtime import (
    DependencyUnavailable,
    Heartbeat,
    Readiness,
    StopFlag,
    freeze_startup_objects,
    heartbeat_age,
    read_readiness,
    stop_on_signals,
    wait_for,
)


def test_wait_for_retries_until_success() -> None:
    calls = []

    def probe() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ok"

    assert wait_for("thing", probe, timeout_s=5, interval_s=0.01) == "ok"
    assert len(calls) == 3


def test_wait_for_stops_at_once_on_a_fatal_error() -> None:
    calls = []

    def probe() -> None:
        calls.append(1)
        raise ValueError("the process exited")

    started = time.monotonic()
    with pytest.raises(ValueError, match="exited"):
        wait_for("thing", probe, timeout_s=30, interval_s=0.01, fatal=(ValueError,))
    assert len(calls) == 1
    assert time.monotonic() - started < 5


def test_wait_for_gives_up_naming_what_and_why() -> None:
    def probe() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(DependencyUnavailable, match=r"broker at x:1 did not answer .*refused"):
        wait_for("broker at x:1", probe, timeout_s=0.2, interval_s=0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_stop_flag(sig: signal.Signals) -> None:
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        assert stop.wait(2.0)
        assert stop.signal_name == sig.name
    assert signal.getsignal(signal.SIGTERM) is not None


def test_heartbeat_beats_through_the_stop_flag_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "alive"
    flag = StopFlag(Heartbeat(path, every_s=3600))
    assert heartbeat_age(path) is None
    assert not flag.is_set()
    assert heartbeat_age(path) is not None
    os.utime(path, (0, 0))  # as if the last beat were long ago
    flag.is_set()  # within the interval: no write
    assert heartbeat_age(path) > 1e6  # type: ignore[operator]


def test_heartbeat_write_failure_does_not_stop_the_service(tmp_path: Path) -> None:
    Heartbeat(tmp_path / "missing-dir" / "alive").beat()  # logs, does not raise


def test_health_command_reads_the_heartbeat_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marketpipe.cli import main

    path = tmp_path / "alive"
    assert main(["health", "--file", str(path)]) == 1
    assert "no heartbeat" in capsys.readouterr().err
    Heartbeat(path).beat()
    assert main(["health", "--file", str(path), "--max-age", "30"]) == 0
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert main(["health", "--file", str(path), "--max-age", "30"]) == 1
    assert "limit 30s" in capsys.readouterr().err


def test_health_command_without_a_file_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marketpipe.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MARKETPIPE_HEALTH_FILE", raising=False)
    assert main(["health"]) == 2
    assert "MARKETPIPE_HEALTH_FILE" in capsys.readouterr().err


def test_readiness_is_written_to_the_heartbeat_file_which_the_heartbeat_keeps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alive"
    heartbeat = Heartbeat(path, every_s=0)
    assert read_readiness(path) is None
    heartbeat.beat()
    assert read_readiness(path) == "ok"  # a plain heartbeat file: nothing wrong reported
    readiness = Readiness(path)
    readiness.not_ready("query features", "retrying: postgres at h:1/db: connection refused")
    readiness.not_ready("query archive", "retrying: parquet at s3://b/x: NETWORK_CONNECTION")
    heartbeat.beat()  # touches, keeps the state
    assert read_readiness(path) == (
        "query features: retrying: postgres at h:1/db: connection refused; "
        "query archive: retrying: parquet at s3://b/x: NETWORK_CONNECTION"
    )
    readiness.ready("query features")
    assert read_readiness(path) == (
        "query archive: retrying: parquet at s3://b/x: NETWORK_CONNECTION"
    )
    readiness.ready("query archive")
    readiness.ready("never in trouble")
    assert read_readiness(path) == readiness.state == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["alive"]  # no temporary left behind


def test_a_new_readiness_clears_what_a_previous_process_left(tmp_path: Path) -> None:
    path = tmp_path / "alive"
    Readiness(path).not_ready("query features", "gave up after 300 s of retrying")
    assert read_readiness(path) == "query features: gave up after 300 s of retrying"
    Readiness(path)  # the restarted process
    assert read_readiness(path) == "ok"


def test_health_ready_fails_while_not_ready_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marketpipe.cli import main

    path = tmp_path / "alive"
    readiness = Readiness(path)
    Heartbeat(path).beat()
    assert main(["health", "--file", str(path), "--ready"]) == 0
    assert "ready" in capsys.readouterr().out
    readiness.not_ready("query features", "retrying: postgres at h:1/db: connection refused")
    assert main(["health", "--file", str(path)]) == 0  # alive: liveness must not kill it
    assert main(["health", "--file", str(path), "--ready"]) == 1
    err = capsys.readouterr().err
    assert err == "not ready: query features: retrying: postgres at h:1/db: connection refused\n"
    readiness.ready("query features")
    assert main(["health", "--file", str(path), "--ready"]) == 0
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert main(["health", "--file", str(path), "--ready", "--max-age", "30"]) == 1  # not alive


def test_start_up_objects_are_frozen_out_of_the_collectors_sight() -> None:
    gc.collect()
    walked = len(gc.get_objects(generation=2))  # what a full collection walks
    assert walked > 10_000  # the test session's modules and objects
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() >= walked
        assert len(gc.get_objects(generation=2)) < walked // 100
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
