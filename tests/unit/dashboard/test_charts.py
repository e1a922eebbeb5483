"""The dashboard's figures, built from frames shaped like the hot store's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from marketpipe.dashboard.charts import dlq_figure, market_figure
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


def test_every_panel_has_its_series() -> None:
    bars, ind, vol = frames(60)
    fig = market_figure("AAA", 60, bars, ind, vol)
    by_name = {t.name: t for t in fig.data}
    assert by_name["60 s bars"].type == "candlestick"
    assert list(by_name["60 s bars"].close) == list(bars["close"])
    # Overlays on the price panel, indicators in their own panels, on one time axis.
    assert {by_name[n].yaxis for n in ("VWAP", "SMA 20 (1 min)", "EMA 20 (1 min)")} == {"y"}
    assert by_name["RSI 14"].yaxis == "y3"
    assert {by_name[n].yaxis for n in ("MACD", "signal", "MACD histogram")} == {"y4"}
    assert by_name["volatility"].yaxis == "y5"
    assert [t.type for t in fig.data if t.yaxis == "y2"] == ["bar"]  # volume
    assert not fig.layout.annotations[0].text.startswith("no ")  # subplot titles only
    sma = [v for v in by_name["SMA 20 (1 min)"].y if v is not None and not pd.isna(v)]
    assert len(sma) == 60 - 19  # SMA 20 needs 20 closes


def test_panels_without_data_say_why() -> None:
    bars, ind, vol = frames(5)
    fig = market_figure("AAA", 1, bars, ind.iloc[0:0], vol.iloc[0:0])
    notes = [a.text for a in fig.layout.annotations]
    assert notes.count("no indicators yet: they need closed 1-minute bars") == 2
    assert "no closed sliding windows yet" in notes
    assert {t.name for t in fig.data} == {"1 s bars", "VWAP", "volume"}


def test_dlq_reasons_largest_first() -> None:
    fig = dlq_figure({"crossed": 3.0, "malformed": 10.0, "duplicate": 1.0})
    assert list(fig.data[0].y) == ["malformed", "crossed", "duplicate"]


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
