"""Port choice for the local stack's servers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from marketpipe.local import process
from marketpipe.local.process import PORT_TAKEN, free_port, pick_ports, server_port_range


def kernel_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    """Stand in for /proc/sys/net/ipv4/ip_local_port_range (``None``: no such file)."""
    fake = tmp_path / "ip_local_port_range"
    if text is not None:
        fake.write_text(text)
    monkeypatch.setattr(process, "EPHEMERAL_RANGE_FILE", fake)


def test_server_ports_sit_below_the_ephemeral_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_range(tmp_path, monkeypatch, "32768\t60999\n")
    assert server_port_range() == range(16384, 32768)
    ports = {free_port() for _ in range(20)}
    assert all(16384 <= p < 32768 for p in ports)
    assert len(ports) > 1  # chosen at random, so parallel stacks rarely meet


def test_without_the_kernel_file_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_range(tmp_path, monkeypatch, None)
    assert server_port_range() == range(0)
    assert 0 < free_port() < 65536


def test_a_low_ephemeral_range_never_yields_privileged_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_range(tmp_path, monkeypatch, "2000 60999\n")
    assert server_port_range() == range(1024, 2000)


def test_taken_ports_are_not_chosen_and_previous_ones_are_kept_when_free() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert taken not in pick_ports([taken], 1, wait_s=0.2)
    free = free_port()
    assert pick_ports([free], 1) == [free]


@pytest.mark.parametrize(
    "log_line",
    [
        "E1121 mini.go:1244 Port allocation failed: port 41981 for S3 (specified by flag "
        "s3.port) is not available on 127.0.0.1 and cannot be used",
        "error: kafka: port 53045 is already in use",
        'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use',
    ],
)
def test_port_taken_messages_of_each_server_are_recognised(log_line: str) -> None:
    assert PORT_TAKEN.search(log_line)


def test_other_start_up_failures_are_not_mistaken_for_a_taken_port() -> None:
    assert not PORT_TAKEN.search("FATAL:  data directory has invalid permissions")
    assert not PORT_TAKEN.search("error: kafka: cannot open data dir: permission denied")
