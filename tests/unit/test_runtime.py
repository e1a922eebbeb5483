from __future__ import annotations

import os
import signal

import pytest

from marketpipe.runtime import DependencyUnavailable, stop_on_signals, wait_for


def test_wait_for_retries_until_success() -> None:
    calls = []

    def probe() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ok"

    assert wait_for("thing", probe, timeout_s=5, interval_s=0.01) == "ok"
    assert len(calls) == 3


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
