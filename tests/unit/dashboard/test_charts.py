"""The dashboard's figures, built from frames shaped like the hot store's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from marketpipe.dashboard.charts import dlq_chart, market_chart
from marketpipe.dashboard.server import streamlit_argv
from marketpipe.features.indicators import indicators
from marketpipe.settings import DashboardSettings

T0 = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)


def frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    starts = [T0 + timedelta(minutes=i) for i in range(n)]
    closes = [100 + (i % 7) - 3 for i in range(n)]
    bars = pd.DataFrame({
        "window_start": starts, "open": [c - 0.5 for c in closes],
        "high": [c + 1 for c in closes], "low": [c - 1 for c in closes], "close": closes,
        "volume": [1000.0] * n, "vwap": closes, "trades": [10] * n,
    })  # fmt: skip
    rows = indicators(closes)
    ind = pd.DataFrame({
        "window_start": starts, "close": closes, "sma_20": [r.sma for r in rows],
        "ema_20": [r.ema for r in rows], "rsi_14": [r.rsi for r in rows],
        "macd": [r.macd for r in rows], "macd_signal": [r.macd_signal for r in rows],
        "macd_hist": [r.macd_hist for r in rows],
    })  # fmt: skip
    vol = pd.DataFrame({"window_end": starts, "volatility": [0.01] * n})
    return bars, ind, vol


def layers(spec: dict[str, object]) -> list[dict[str, object]]:
    """Every single-mark chart in a (nested) Vega-Lite spec."""
    found: list[dict[str, object]] = []
    for key in ("vconcat", "layer"):
        for part in spec.get(key, []):  # type: ignore[attr-defined]
            found += layers(part)
    if "mark" in spec:
        found.append(spec)
    return found


def mark(chart: dict[str, object]) -> str:
    m = chart["mark"]
    return str(m["type"] if isinstance(m, dict) else m)


def test_every_panel_has_its_series() -> None:
    bars, ind, vol = frames(60)
    spec = market_chart("AAA", 60, bars, ind, vol).to_dict()
    panels = spec["vconcat"]
    assert len(panels) == 5  # price, volume, RSI, MACD, volatility
    assert spec["resolve"]["scale"]["x"] == "shared"  # one time axis
    price = layers(panels[0])
    assert [mark(c) for c in price] == ["rule", "bar", "line"]  # wicks, bodies, overlays
    assert price[0]["encoding"]["y"]["field"] == "low"
    assert price[0]["encoding"]["y2"]["field"] == "high"
    assert price[1]["encoding"]["y"]["field"] == "open"
    assert price[1]["encoding"]["y2"]["field"] == "close"
    overlay = spec["datasets"][price[2]["data"]["name"]]
    series = {row["series"] for row in overlay}
    assert series == {"VWAP", "SMA 20 (1 min)", "EMA 20 (1 min)"}
    assert sum(1 for row in overlay if row["series"] == "SMA 20 (1 min)") == 60 - 19
    assert layers(panels[1])[0]["encoding"]["y"]["field"] == "volume"
    assert layers(panels[2])[0]["encoding"]["y"]["field"] == "rsi_14"
    assert {c["encoding"]["y"]["field"] for c in layers(panels[3])} == {
        "macd_hist",
        "macd",
        "macd_signal",
    }
    assert layers(panels[4])[0]["encoding"]["y"]["field"] == "volatility"


def test_panels_without_data_say_why() -> None:
    bars, ind, vol = frames(5)
    spec = market_chart("AAA", 1, bars, ind.iloc[0:0], vol.iloc[0:0]).to_dict()
    notes = [
        spec["datasets"][c["data"]["name"]][0]["text"]
        for c in layers(spec) if mark(c) == "text"
    ]  # fmt: skip
    assert notes == [
        "no indicators yet: they need closed 1-minute bars",
        "no closed sliding windows yet",
    ]
    assert spec["vconcat"][0]["description"] == "AAA 1 s bars"


def test_dlq_reasons_largest_first() -> None:
    spec = dlq_chart({"crossed": 3.0, "malformed": 10.0, "duplicate": 1.0}).to_dict()
    assert spec["encoding"]["y"]["sort"] == "-x"
    assert {r["reason"]: r["messages"] for r in spec["datasets"][spec["data"]["name"]]} == {
        "crossed": 3.0,
        "malformed": 10.0,
        "duplicate": 1.0,
    }


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_streamlit_runs_headless_without_usage_statistics(address: str) -> None:
    argv = streamlit_argv(DashboardSettings(address=address, port=9999), "my.env")
    flags = dict(zip(argv[5:-3:2], argv[6:-3:2], strict=True))
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert flags["--server.address"] == address
    assert flags["--server.port"] == "9999"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"  # no calls home from a pod
    assert argv[-3:] == ["--", "--env-file", "my.env"]


def test_a_busy_port_is_one_line_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from marketpipe.cli import main

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["dashboard", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no URL printed for a server that never started
    assert err.count("\n") == 1
    assert f"127.0.0.1:{port}" in err
    assert "MARKETPIPE_DASHBOARD__PORT" in err
