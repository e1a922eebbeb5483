"""The Streamlit script behind ``marketpipe dashboard`` (``server.py`` starts it).

Settings come from the environment, as for every stage (``MARKETPIPE_DASHBOARD__*``); the
symbol is in the URL (``?symbol=MSFT``), so a view can be shared. The charts and the health
tiles refresh on their own every ``refresh_s`` seconds; one connection per refresh."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from marketpipe.dashboard import charts
from marketpipe.dashboard.health import Prometheus, PrometheusUnavailable
from marketpipe.dashboard.store import HotStore, Sink, StoreUnavailable, open_store
from marketpipe.settings import ConfigError, Settings, load_settings


@st.cache_resource
def _settings() -> Settings:
    """From the environment and the dotenv file ``marketpipe dashboard`` was given."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", default=".env")
    env_file = parser.parse_known_args()[0].env_file
    return load_settings(env_file=env_file or None)


@st.cache_resource
def _prometheus(url: str) -> Prometheus:
    return Prometheus(url)


def _sink(settings: Settings) -> Sink:
    return settings.dashboard.sink or (
        "postgres" if settings.features.hot_sink == "postgres" else "duckdb"
    )


def _pickers(settings: Settings, sink: Sink) -> tuple[str, int, int] | None:
    """The sidebar: symbol (kept in the URL), bar interval, how many bars."""
    with open_store(settings, sink) as store:
        symbols, intervals = store.symbols(), store.intervals()
    if not symbols:
        st.info("No bars yet: the features job writes them once the first windows close.")
        return None
    wanted = st.query_params.get("symbol")
    symbol = st.sidebar.selectbox(
        "Symbol", symbols, index=symbols.index(wanted) if wanted in symbols else 0, key="symbol"
    )
    st.query_params["symbol"] = symbol
    interval = st.sidebar.selectbox(
        "Bar interval", intervals, index=len(intervals) - 1, format_func=_interval_name
    )
    limit = st.sidebar.slider(
        "Bars", 10, max(10, settings.dashboard.bars * 4), settings.dashboard.bars
    )
    return str(symbol), int(interval), int(limit)


def _market(store: HotStore, symbol: str, interval_s: int, limit: int) -> None:
    bars = store.bars(symbol, interval_s, limit)
    if bars.empty:
        st.info(f"No {_interval_name(interval_s)} bars for {symbol} yet.")
        return
    since = bars["window_start"].iloc[0]
    ind = store.indicators(symbol, since, limit)
    vol = store.volatility(symbol, since, limit * 6)
    last = bars.iloc[-1]
    st.subheader(f"{symbol} · {_interval_name(interval_s)} bars")
    cols = st.columns(4)
    cols[0].metric("Close", f"{last['close']:,.4g}")
    cols[1].metric("VWAP", f"{last['vwap']:,.4g}" if pd.notna(last["vwap"]) else "-")
    cols[2].metric("Volume", f"{last['volume']:,.0f}")
    cols[3].metric("Bar", f"{last['window_start']:%H:%M:%S}")
    st.altair_chart(charts.market_chart(symbol, interval_s, bars, ind, vol), width="stretch")


def _store_health(store: HotStore) -> None:
    fresh = store.freshness()
    now = datetime.now(UTC)
    if fresh.empty:
        return
    fresh["newest row age s"] = [
        (now - t).total_seconds() if pd.notna(t) else None for t in fresh["newest_write"]
    ]
    st.caption(
        "Hot store, newest five minutes of windows: rows, freshness, event time -> row latency"
    )
    st.dataframe(
        fresh[["output", "rows", "newest row age s", "latency_p50_s", "latency_p99_s"]],
        hide_index=True, width="stretch",
    )  # fmt: skip


def _prometheus_health(settings: Settings) -> None:
    url = settings.dashboard.prometheus_url
    if not url:
        st.caption(
            "Rates, lag and DLQ reasons come from Prometheus: "
            "set MARKETPIPE_DASHBOARD__PROMETHEUS_URL (--prometheus-url)."
        )
        return
    try:
        health = _prometheus(url).health()
    except PrometheusUnavailable as exc:
        st.warning(str(exc))
        return
    tiles = st.columns(len(health.scalars))
    for tile, (name, value) in zip(tiles, health.scalars.items(), strict=True):
        tile.metric(name, "-" if value is None else f"{value:,.0f}")
    left, right = st.columns(2)
    reasons = health.by_label["DLQ by reason (5 min)"]
    left.caption("DLQ by reason, last 5 min")
    if reasons:
        left.altair_chart(charts.dlq_chart(reasons), width="stretch")
    else:
        left.write("none")
    latency = pd.DataFrame(
        {"p50 s": health.by_label["latency p50 s"], "p99 s": health.by_label["latency p99 s"]}
    )
    right.caption("Event time -> row latency per output (features job)")
    right.dataframe(latency, width="stretch")


def _interval_name(seconds: int) -> str:
    return charts._interval(seconds)


def main() -> None:
    st.set_page_config(
        page_title="marketpipe", page_icon=":chart_with_upwards_trend:", layout="wide"
    )
    try:
        settings = _settings()
    except ConfigError as exc:
        st.error(str(exc))
        return
    sink = _sink(settings)
    st.sidebar.title("marketpipe")
    st.sidebar.caption(f"hot store: {sink}")
    auto = st.sidebar.toggle("Auto-refresh", value=True)
    every = settings.dashboard.refresh_s if auto else None
    try:
        picked = _pickers(settings, sink)
    except StoreUnavailable as exc:
        st.error(str(exc))
        return
    # One view at a time (not tabs): a tab renders even unseen, and the first view is the
    # market's, so it should not wait for the health queries and their table widget.
    view = st.sidebar.radio("View", ["Market", "Pipeline health"], key="view")

    @st.fragment(run_every=every)
    def market_view() -> None:
        if picked is None:
            return
        try:
            with open_store(settings, sink) as store:
                _market(store, *picked)
        except StoreUnavailable as exc:
            st.error(str(exc))

    @st.fragment(run_every=every)
    def health_view() -> None:
        try:
            with open_store(settings, sink) as store:
                _store_health(store)
        except StoreUnavailable as exc:
            st.error(str(exc))
        _prometheus_health(settings)

    if view == "Market":
        market_view()
    else:
        health_view()


main()
