"""`--output json`: each reporting command prints one JSON object of the shape documented in
docs/cli-json.md, and nothing else on stdout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.dashboard_view import write_day
from marketpipe.cli import main
from marketpipe.features.validate import TableCheck, ValidationReport
from marketpipe.settings import flatten_env, load_settings
from marketpipe.topicstats import TopicSummary

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli-json.md"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--output", "json"]) == 0
    out = capsys.readouterr().out
    return dict(json.loads(out))


def test_settings(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_POSTGRES__PASSWORD", "hunter2")
    got = run_json(capsys, "settings")
    assert got == flatten_env(load_settings())
    assert got["MARKETPIPE_POSTGRES__PASSWORD"] == "**********"


def test_latest(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    db = tmp_path / "hot.duckdb"
    write_day(db, 2, 1_800)
    monkeypatch.setenv("MARKETPIPE_FEATURES__DUCKDB_PATH", str(db))
    got = run_json(capsys, "latest")
    assert got["sink"] == "duckdb"
    tables = got["tables"]
    assert isinstance(tables, dict)
    bars = tables["bars (1 min)"]
    assert [b["symbol"] for b in bars] == ["SYM000", "SYM001"]
    assert bars[0]["window_start"] == "2024-03-08T14:59:00+00:00"
    assert isinstance(bars[0]["close"], float)
    assert set(tables) == {"bars (1 min)", "window features", "indicators (closed 1 min bars)"}


def test_cold(capsys: pytest.CaptureFixture[str], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    folder = tmp_path / "archive" / "raw" / "date=2024-03-08" / "symbol=AAA"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2]}), folder / "part-0.parquet")
    monkeypatch.setenv("MARKETPIPE_FEATURES__ARCHIVE_ROOT", str(tmp_path / "archive"))
    got = run_json(capsys, "cold")
    assert got["root"] == str(tmp_path / "archive")
    (raw,) = got["datasets"]  # type: ignore[misc]
    assert raw["name"] == "raw"
    assert raw["files"] == 1
    assert raw["dates"] == ["2024-03-08", "2024-03-08"]
    assert raw["bytes"] > 0


def test_validate_report_shape() -> None:
    report = ValidationReport(
        10, datetime(2024, 3, 8, 15, tzinfo=UTC),
        [TableCheck("bars", 5, 1, 0, 0, ["missing: symbol=A"], (0.5, 1.0, 2.0)),
         TableCheck("indicators", 2)],
    )  # fmt: skip
    got = json.loads(json.dumps(report.as_dict(), default=str))
    assert got["ok"] is False
    assert got["checks"][0] == {
        "table": "bars", "ok": False, "expected": 5, "missing": 1, "extra": 0, "differing": 0,
        "examples": ["missing: symbol=A"], "latency_s": {"p50": 0.5, "p99": 1.0, "max": 2.0},
    }  # fmt: skip
    assert got["checks"][1]["latency_s"] is None


def test_topic_summary_shape() -> None:
    summary = TopicSummary()
    tick = (b'{"symbol":"AAA","event_time":1,"seq":1,"price":10.0,"size":1.0,"bid":9.9,'
            b'"ask":10.1,"bid_size":null,"ask_size":null,"source":"t"}')  # fmt: skip
    summary.add(tick, [("mp.reasons", b"crossed")])
    summary.add(b"garbage")
    assert summary.as_dict("ticks.dlq") == {
        "topic": "ticks.dlq", "messages": 2, "contract_valid": 1, "off_contract": 1,
        "reasons": {"crossed": 1},
        "symbols": {"AAA": {"ticks": 1, "first_price": 10.0, "last_price": 10.0}},
    }  # fmt: skip


@pytest.mark.parametrize(
    "command",
    ["settings", "latest", "cold", "validate", "summary", "local status", "cluster",
     "produce|replay|live|quality|features"],
)  # fmt: skip
def test_every_shape_is_documented(command: str) -> None:
    assert f"### `marketpipe {command} --output json`" in DOCS.read_text()
