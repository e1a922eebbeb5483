"""What the dashboard's browser test and benchmark share: a hot store holding a trading day of
feature rows, the dashboard started as a user starts it, and a headless Chromium that measures
how long the first view takes to draw.

The rows are generated in DuckDB (a random walk per symbol; 1 s and 1 min bars, 60 s/10 s
sliding-window volatility) and the indicators with marketpipe's own indicator code, into the
tables the features job creates; they are realistic in shape and size, not a pipeline run (the
demo is that, and its screenshot is in the README and docs/operations.md)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from marketpipe.features.indicators import indicators
from marketpipe.local.process import free_port
from marketpipe.sinks.duckdb import DuckDBSink

DAY_START = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)


def symbol_names(count: int) -> list[str]:
    return [f"SYM{i:03d}" for i in range(count)]


def write_day(path: Path, symbols: int, seconds: int, start: datetime = DAY_START) -> None:
    """``seconds`` of 1 s bars per symbol, the 1 min bars and sliding windows over them, and
    the 1 min bars' indicators, into a new DuckDB file at ``path``."""
    sink = DuckDBSink(path)
    con = sink.con  # creates the feature tables, as the features job does
    con.execute("SELECT setseed(0.42)")
    con.execute(
        f"""
        CREATE TEMP TABLE walk AS
        WITH steps AS (
            SELECT s, i, (random() - 0.5) * 0.0008 AS r, 1 + floor(random() * 40)::INT AS n
            FROM range({symbols}) a(s), range({seconds}) b(i)
        )
        SELECT 'SYM' || lpad(s::VARCHAR, 3, '0') AS symbol,
               TIMESTAMPTZ '{start.isoformat()}' + to_seconds(i) AS t, r, n,
               (100 + s) * exp(sum(r) OVER (PARTITION BY s ORDER BY i)) AS c
        FROM steps
        """
    )
    con.execute(
        """
        INSERT INTO bars
        SELECT symbol, 1, t, t + INTERVAL 1 SECOND, c / exp(r), greatest(c / exp(r), c) * 1.0001,
               least(c / exp(r), c) * 0.9999, c, n * 100.0, n, (c / exp(r) + c) / 2,
               c * 0.9999, c * 1.0001, c * 0.0002, t + INTERVAL 900 MILLISECOND,
               t + INTERVAL 1300 MILLISECOND
        FROM walk
        """
    )
    con.execute(
        """
        INSERT INTO bars
        SELECT symbol, 60, m, m + INTERVAL 1 MINUTE, arg_min(c / exp(r), t),
               max(greatest(c / exp(r), c) * 1.0001), min(least(c / exp(r), c) * 0.9999),
               arg_max(c, t), sum(n) * 100.0, sum(n), sum(c * n) / sum(n),
               arg_max(c, t) * 0.9999, arg_max(c, t) * 1.0001, avg(c) * 0.0002,
               max(t) + INTERVAL 900 MILLISECOND, m + INTERVAL 61 SECOND
        FROM (SELECT *, time_bucket(INTERVAL 1 MINUTE, t) AS m FROM walk)
        GROUP BY symbol, m
        """
    )
    con.execute(
        """
        INSERT INTO window_features
        SELECT symbol, t - INTERVAL 59 SECOND, t + INTERVAL 1 SECOND, lr, vol, 60 * 20,
               t + INTERVAL 900 MILLISECOND, t + INTERVAL 2 SECOND
        FROM (
            SELECT symbol, t, epoch(t)::BIGINT AS e,
                   sum(r) OVER w AS lr, stddev_samp(r) OVER w AS vol, count(*) OVER w AS k
            FROM walk WINDOW w AS (PARTITION BY symbol ORDER BY t ROWS 59 PRECEDING)
        )
        WHERE e % 10 = 9 AND k = 60
        """
    )
    closes = con.execute(
        "SELECT symbol, window_start, close FROM bars WHERE interval_seconds = 60 "
        "ORDER BY symbol, window_start"
    ).fetchall()
    rows: list[tuple[object, ...]] = []
    for symbol in sorted({s for s, _, _ in closes}):
        series = [(ws, c) for s, ws, c in closes if s == symbol]
        for (ws, close), ind in zip(series, indicators(c for _, c in series), strict=True):
            rows.append((symbol, ws, close, ind.sma, ind.ema, ind.rsi, ind.macd,
                         ind.macd_signal, ind.macd_hist, "{}", ws))  # fmt: skip
    con.executemany("INSERT INTO indicators VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    sink.close()


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_dashboard(
    duckdb_path: Path, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Dashboard]:
    """``marketpipe dashboard`` on a free port over ``duckdb_path``, until its health answers."""
    port = free_port()
    env = {
        **os.environ,
        "MARKETPIPE_FEATURES__DUCKDB_PATH": str(duckdb_path),
        "MARKETPIPE_DASHBOARD__REFRESH_S": "600",  # the measurement is of the first view
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "marketpipe", "dashboard", "--port", str(port), "--sink", "duckdb"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/_stcore/health", timeout=1).ok:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Dashboard(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
#: The charts are drawn: Vega renders them (SVG or canvas) inside its embed.
CANDLES = ".vega-embed svg.marks, .vega-embed canvas"


def browser(profile: Path, width: int = 1500, height: int = 1300):  # type: ignore[no-untyped-def]
    """Headless Chromium through chromedriver, both Debian's (never a download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        f"--user-data-dir={profile}", f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def first_view_s(driver, url: str, timeout_s: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds from asking for ``url`` until its candlesticks are drawn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, timeout_s, poll_frequency=0.02).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, CANDLES)
    )
    return time.perf_counter() - started
