"""Vega-Lite charts (through Altair) from the hot store's frames: pure functions, no I/O.

Vega-Lite rather than Plotly: the browser fetches and compiles about 0.8 MB of chart code
instead of 4.7 MB, which is most of a first visit's time (see docs/operations.md)."""

from __future__ import annotations

import altair as alt
import pandas as pd

UP, DOWN = "#26a69a", "#ef5350"
#: Overlay series and their colours (one legend for the price panel).
OVERLAYS = {"VWAP": "#ab47bc", "SMA 20 (1 min)": "#ffa726", "EMA 20 (1 min)": "#42a5f5"}
WIDTH = "container"
#: 24-hour times (the browser's time zone), seconds when the bars are seconds apart.
TIME_AXIS = alt.Axis(format="%H:%M:%S", labelOverlap=True)


def market_chart(
    symbol: str, interval_s: int, bars: pd.DataFrame, ind: pd.DataFrame, vol: pd.DataFrame
) -> alt.VConcatChart:
    """Candlesticks with VWAP and the 1-minute SMA/EMA 20 overlays; volume, RSI, MACD and
    rolling volatility panels below, on one shared time axis."""
    x = alt.X("window_start:T", title=None, axis=TIME_AXIS)
    rising = alt.condition("datum.open <= datum.close", alt.value(UP), alt.value(DOWN))
    candles = alt.Chart(bars).encode(
        x=x,
        tooltip=["window_start:T", "open:Q", "high:Q", "low:Q", "close:Q", "volume:Q", "vwap:Q"],
    )
    overlays = _long(bars, {"vwap": "VWAP"}, "window_start")
    if len(ind):
        overlays = pd.concat(
            [
                overlays,
                _long(
                    ind, {"sma_20": "SMA 20 (1 min)", "ema_20": "EMA 20 (1 min)"}, "window_start"
                ),
            ]
        )
    lines = (
        alt.Chart(overlays)
        .mark_line(strokeWidth=1.4)
        .encode(
            x=x,
            y="value:Q",
            color=alt.Color(
                "series:N",
                title=None,
                legend=alt.Legend(orient="top"),
                scale=alt.Scale(domain=list(OVERLAYS), range=list(OVERLAYS.values())),
            ),
        )
    )
    price = alt.layer(
        candles.mark_rule().encode(
            y=alt.Y("low:Q", scale=alt.Scale(zero=False), title=None), y2="high:Q", color=rising
        ),
        candles.mark_bar().encode(y="open:Q", y2="close:Q", color=rising),
        lines,
    ).properties(height=360, width=WIDTH, description=f"{symbol} {_interval(interval_s)} bars")
    volume = (
        candles.mark_bar()
        .encode(y=alt.Y("volume:Q", title="volume"), color=rising)
        .properties(height=90, width=WIDTH)
    )
    panels = [price, volume]
    if len(ind):
        ix = alt.Chart(ind).encode(x=x)
        levels = (
            alt.Chart(pd.DataFrame({"level": [30, 70]}))
            .mark_rule(strokeDash=[4, 4], color="grey")
            .encode(y="level:Q")
        )
        panels.append(
            alt.layer(
                ix.mark_line(color="#7e57c2").encode(
                    y=alt.Y("rsi_14:Q", title="RSI 14", scale=alt.Scale(domain=[0, 100]))
                ),
                levels,
            ).properties(height=100, width=WIDTH)
        )
        hist_colour = alt.condition("datum.macd_hist >= 0", alt.value(UP), alt.value(DOWN))
        panels.append(
            alt.layer(
                ix.mark_bar().encode(
                    y=alt.Y("macd_hist:Q", title="MACD 12/26/9"), color=hist_colour
                ),
                ix.mark_line(color="#42a5f5").encode(y="macd:Q"),
                ix.mark_line(color="#ffa726").encode(y="macd_signal:Q"),
            ).properties(height=100, width=WIDTH)
        )
    else:
        panels.append(_note("no indicators yet: they need closed 1-minute bars"))
    if len(vol):
        panels.append(
            alt.Chart(vol)
            .mark_line(color="#8d6e63")
            .encode(
                x=alt.X("window_end:T", title=None, axis=TIME_AXIS),
                y=alt.Y("volatility:Q", title="volatility"),
            )
            .properties(height=100, width=WIDTH)
        )
    else:
        panels.append(_note("no closed sliding windows yet"))
    chart: alt.VConcatChart = alt.vconcat(*panels, spacing=6).resolve_scale(
        x="shared", color="independent"
    )
    return chart


def dlq_chart(reasons: dict[str, float]) -> alt.Chart:
    """DLQ messages by reason over the last five minutes, largest first."""
    frame = pd.DataFrame({"reason": list(reasons), "messages": list(reasons.values())})
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(x="messages:Q", y=alt.Y("reason:N", sort="-x", title=None))
        .properties(width=WIDTH, height=40 + 24 * max(1, len(frame)))
    )
    return chart


def _long(frame: pd.DataFrame, columns: dict[str, str], x: str) -> pd.DataFrame:
    """Columns as (x, series, value) rows, nulls dropped: one line per series."""
    parts = [
        pd.DataFrame({x: frame[x], "series": name, "value": frame[col]})
        for col, name in columns.items()
    ]
    out = pd.concat(parts) if parts else pd.DataFrame(columns=[x, "series", "value"])
    return out.dropna(subset=["value"])


def _note(text: str) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(pd.DataFrame({"text": [text]}))
        .mark_text(color="grey")
        .encode(text="text:N")
        .properties(height=60, width=WIDTH)
    )
    return chart


def _interval(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
