"""Plotly figures from the hot store's frames: pure functions, no I/O."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

UP, DOWN = "#26a69a", "#ef5350"
ROWS = ("", "volume", "RSI 14", "MACD 12/26/9", "volatility")


def market_figure(
    symbol: str, interval_s: int, bars: pd.DataFrame, ind: pd.DataFrame, vol: pd.DataFrame
) -> go.Figure:
    """Candlesticks with VWAP and the 1-minute SMA/EMA 20 overlays; volume, RSI, MACD and
    rolling volatility panels below, on one time axis."""
    fig = make_subplots(
        rows=len(ROWS), cols=1, shared_xaxes=True, vertical_spacing=0.025,
        row_heights=[0.44, 0.12, 0.14, 0.15, 0.15], subplot_titles=ROWS,
    )  # fmt: skip
    x = bars["window_start"]
    fig.add_trace(
        go.Candlestick(
            x=x, open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"],
            name=f"{interval_s} s bars", increasing_line_color=UP, decreasing_line_color=DOWN,
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.add_trace(_line(x, bars["vwap"], "VWAP", "#ab47bc", dash="dot"), row=1, col=1)
    colours = [UP if c >= o else DOWN for o, c in zip(bars["open"], bars["close"], strict=True)]
    fig.add_trace(
        go.Bar(x=x, y=bars["volume"], name="volume", marker_color=colours, showlegend=False),
        row=2, col=1,
    )  # fmt: skip
    if len(ind):
        xi = ind["window_start"]
        fig.add_trace(_line(xi, ind["sma_20"], "SMA 20 (1 min)", "#ffa726"), row=1, col=1)
        fig.add_trace(_line(xi, ind["ema_20"], "EMA 20 (1 min)", "#42a5f5"), row=1, col=1)
        fig.add_trace(_line(xi, ind["rsi_14"], "RSI 14", "#7e57c2"), row=3, col=1)
        for level in (30, 70):
            fig.add_hline(y=level, line_dash="dash", line_color="grey", row=3, col=1)
        hist = ind["macd_hist"].fillna(0.0)
        fig.add_trace(
            go.Bar(x=xi, y=hist, name="MACD histogram", showlegend=False,
                   marker_color=[UP if h >= 0 else DOWN for h in hist]),
            row=4, col=1,
        )  # fmt: skip
        fig.add_trace(_line(xi, ind["macd"], "MACD", "#42a5f5"), row=4, col=1)
        fig.add_trace(_line(xi, ind["macd_signal"], "signal", "#ffa726"), row=4, col=1)
    else:
        for row in (3, 4):
            _note(fig, row, "no indicators yet: they need closed 1-minute bars")
    if len(vol):
        fig.add_trace(
            _line(vol["window_end"], vol["volatility"], "volatility", "#8d6e63"), row=5, col=1
        )
    else:
        _note(fig, 5, "no closed sliding windows yet")
    fig.update_layout(
        height=900, margin={"l": 50, "r": 20, "t": 40, "b": 20}, hovermode="x unified",
        xaxis_rangeslider_visible=False,
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
        uirevision=f"{symbol}/{interval_s}",  # keep zoom across refreshes of the same chart
    )  # fmt: skip
    return fig


def dlq_figure(reasons: dict[str, float]) -> go.Figure:
    """DLQ messages by reason over the last five minutes."""
    names = sorted(reasons, key=lambda r: -reasons[r])
    fig = go.Figure(go.Bar(x=[reasons[n] for n in names], y=names, orientation="h"))
    fig.update_layout(
        height=60 + 28 * max(1, len(names)), margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    return fig


def _line(x: pd.Series, y: pd.Series, name: str, colour: str, dash: str = "solid") -> go.Scatter:
    return go.Scatter(
        x=x, y=y, name=name, mode="lines", line={"color": colour, "dash": dash, "width": 1.4}
    )


def _note(fig: go.Figure, row: int, text: str) -> None:
    axis = "" if row == 1 else str(row)
    fig.add_annotation(
        text=text, xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.5,
        showarrow=False, font={"color": "grey"},
    )  # fmt: skip
