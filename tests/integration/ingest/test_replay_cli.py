"""`marketpipe replay` as a user runs it, against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketpipe.contracts import Tick, decode_tick
from marketpipe.kafka import read_to_end
from marketpipe.settings import Settings
from tests.integration.helpers import run_cli
from tests.tickfiles import kibot_rows, write_lines, write_parquet


def topic_ticks(settings: Settings) -> list[Tick]:
    return [decode_tick(m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]


@pytest.mark.parametrize("compress", [False, True])
def test_replay_kibot_keeps_event_time_and_order(
    settings: Settings, tmp_path: Path, compress: bool
) -> None:
    rows = kibot_rows(3000)
    name = "IBM.txt.gz" if compress else "IBM.txt"
    path = write_lines(tmp_path / name, rows, compress=compress)
    result = run_cli(settings, "replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "rows: 3000 read, 3000 published, 0 skipped, 0 rejected" in result.stdout
    assert "delivery: 3000 acknowledged, 0 failed" in result.stdout

    ticks = topic_ticks(settings)
    assert [t.seq for t in ticks] == list(range(1, 3001))  # one symbol: one partition, file order
    assert {t.symbol for t in ticks} == {"IBM"}
    first = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)  # 09:30 New York
    assert ticks[0].event_time == int(first.timestamp() * 1e6)
    assert ticks[-1].event_time == int(first.timestamp() * 1e6) + (2999 // 3) * 1_000_000
    prices = [float(r.split(",")[2]) for r in rows]
    assert [t.price for t in ticks] == prices
    assert {t.received_at for t in ticks} == {None}  # a file's ticks: receipt time unknown


def test_bad_rows_are_reported_not_fatal_and_strict_fails(
    settings: Settings, tmp_path: Path
) -> None:
    rows = kibot_rows(50)
    rows[9] = "03/08/2024,09:30:03,oops,1,2,3"
    path = write_lines(tmp_path / "IBM.txt", rows)
    result = run_cli(settings, "replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "rows: 50 read, 49 published, 0 skipped, 1 rejected" in result.stdout
    assert f"{path} line 10: number: price is not a number: 'oops'" in result.stdout
    strict = run_cli(settings, "replay", str(path), "--strict")
    assert strict.returncode == 1


def test_unknown_or_missing_file_is_one_line_and_publishes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    good = write_lines(tmp_path / "IBM.txt", kibot_rows(10))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    for bad, message in (
        (junk, "not a text or Parquet file"),
        (tmp_path / "nope.txt", "no such file"),
    ):
        result = run_cli(settings, "replay", str(good), str(bad))
        assert result.returncode == 2
        assert result.stderr.strip() == f"marketpipe replay: {bad}: {message}"
    assert topic_ticks(settings) == []


def test_parquet_archive_round_trip_keeps_identity(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    expected = []
    for sym, base in (("AAPL", 189.5), ("MSFT", 415.0)):
        n = 100
        table = {
            "event_time": [1_700_000_000_000_000 + i * 1000 for i in range(n)],
            "seq": list(range(41, 41 + n)),
            "price": [base + i / 100 for i in range(n)],
            "size": [float(i + 1) for i in range(n)],
            "bid": [base - 0.01 + i / 100 for i in range(n)],
            "ask": [base + 0.01 + i / 100 for i in range(n)],
            "bid_size": [None] * n,
            "ask_size": [5.0] * n,
            "source": ["synthetic"] * n,
        }
        write_parquet(root / "date=2023-11-14" / f"symbol={sym}" / "part-0.parquet", table)
        expected += [
            Tick(symbol=sym, **{k: v[i] for k, v in table.items()})  # type: ignore[arg-type]
            for i in range(n)
        ]
    result = run_cli(settings, "replay", str(root))
    assert result.returncode == 0, result.stderr
    got = sorted(topic_ticks(settings), key=lambda t: (t.symbol, t.seq))
    assert got == expected
