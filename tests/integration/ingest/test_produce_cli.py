"""`marketpipe produce` and `marketpipe summary` as a user runs them, against the real broker."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

from marketpipe.contracts import decode_tick
from marketpipe.kafka import read_to_end
from marketpipe.settings import Settings
from tests.integration.helpers import run_cli, service_env


def test_produce_then_summary(settings: Settings) -> None:
    produced = run_cli(
        settings,
        "produce",
        "--symbols",
        "AAPL,MSFT,ETH-USD",
        "--count",
        "3000",
        "--tps",
        "0",
        "--seed",
        "3",
        "--malformed",
        "0.01",
    )
    assert produced.returncode == 0, produced.stderr
    assert "3000 ticks over 3 symbols" in produced.stdout
    assert re.search(r"delivery: (\d+) acknowledged, 0 failed, 0 unconfirmed", produced.stdout)
    malformed = int(re.search(r"malformed=(\d+)", produced.stdout).group(1))  # type: ignore[union-attr]

    summary = run_cli(settings, "summary")
    assert summary.returncode == 0, summary.stderr
    assert f"{3000 + malformed} messages, 3000 contract-valid ticks, {malformed} off-contract" in (
        summary.stdout
    )
    counts = dict(re.findall(r"^(AAPL|MSFT|ETH-USD)\s+(\d+)", summary.stdout, re.M))
    assert sum(map(int, counts.values())) == 3000
    assert set(counts) == {"AAPL", "MSFT", "ETH-USD"}


def test_sigterm_flushes_and_accounts_for_every_message(settings: Settings) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketpipe", "produce", "--tps", "5000", "--symbol-count", "4"],
        env=service_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out
    acknowledged = int(re.search(r"delivery: (\d+) acknowledged, 0 failed", out).group(1))  # type: ignore[union-attr]
    assert acknowledged > 1000
    on_topic = sum(1 for _ in read_to_end(settings.kafka, settings.kafka.topic_raw))
    assert on_topic == acknowledged


def test_missing_topic_is_one_clear_line(settings: Settings) -> None:
    result = run_cli(settings, "produce", "--count", "10", "--topic", "does-not-exist")
    assert result.returncode == 3
    assert "topic 'does-not-exist' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_one_clear_line(settings: Settings) -> None:
    from marketpipe.local.process import free_port

    dead = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "connect_timeout_s": 2}
            )
        }
    )
    result = run_cli(dead, "produce", "--count", "10")
    assert result.returncode == 3
    assert "Kafka broker at 127.0.0.1:" in result.stderr
    assert "did not answer within 2s" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_restarted_producer_continues_every_series(settings: Settings) -> None:
    """Seq numbers go on from the topic's newest tick per symbol, with no repeat and no hole,
    and prices go on from the last one (no jump back to the start price)."""
    args = ("produce", "--symbols", "AAPL,MSFT,ETH-USD", "--count", "3000", "--tps", "0")
    for seed in ("1", "2"):
        result = run_cli(settings, *args, "--seed", seed)
        assert result.returncode == 0, result.stderr
    series: dict[str, list[tuple[int, float]]] = {}
    for msg in read_to_end(settings.kafka, settings.kafka.topic_raw):
        tick = decode_tick(msg.value() or b"")
        series.setdefault(tick.symbol, []).append((tick.seq, tick.price))
        assert tick.received_at is not None  # the synthetic feed: generated = received
    assert sum(len(s) for s in series.values()) == 6000
    for symbol, points in series.items():
        seqs = sorted(seq for seq, _ in points)
        assert seqs == list(range(1, len(points) + 1)), symbol
        by_seq = dict(points)
        for seq in range(2, len(points) + 1):  # no step anywhere near a restart-size jump
            assert abs(by_seq[seq] / by_seq[seq - 1] - 1) < 0.02, (symbol, seq)


def test_stage_summaries_as_json(settings: Settings) -> None:
    """A script reads what the producer and the checker did (docs/cli-json.md)."""
    import json

    produced = run_cli(settings, "produce", "--count", "400", "--tps", "0", "--crossed", "0.05",
                       "--output", "json")  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    out = json.loads(produced.stdout)
    assert (out["command"], out["exit_code"], out["failure"]) == ("produce", 0, None)
    summary = out["summary"]
    assert summary["ticks"] == 400
    assert summary["delivery"]["ok"] is True
    assert summary["delivery"]["delivered"] == summary["messages"] == 400
    crossed = summary["labels"]["crossed"]
    checked = run_cli(settings, "quality", "--until-idle", "2", "-o", "json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)["summary"]
    assert report["consumed"] == 400
    assert report["balanced"] is True
    assert report["counts"]["dlq"] == report["counts"]["reasons"]["crossed"] == crossed
    assert report["lag"] == 0
