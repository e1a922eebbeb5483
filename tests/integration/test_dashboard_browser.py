"""`marketpipe dashboard` as a person sees it: started as docs/operations.md says, opened in a real
headless Chromium (Debian's, through chromedriver), over a real DuckDB hot store.

The page loads and draws the candlesticks (checked in a screenshot, by the candles' own
colours), the symbol picker switches the charts and the URL, and a missing store is one line
on the page that says which command creates it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks import dashboard_view as view
from marketpipe.dashboard.charts import DOWN, UP

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which(view.CHROMIUM) and shutil.which(view.CHROMEDRIVER)),
        reason="needs chromium and chromium-driver (make install adds them)",
    ),
    pytest.mark.timeout(240),
]


def wait_for_text(driver: Any, text: str, timeout_s: float = 30) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text
    )


def colour_share(png: bytes, hex_colour: str) -> float:
    """The share of the screenshot's pixels in (about) this colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    want = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    near = np.abs(pixels - want).sum(axis=2) < 40
    return float(near.mean())


def test_the_page_draws_the_market_and_the_symbol_picker_works(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    db = tmp_path / "hot.duckdb"
    view.write_day(db, 3, 3_600)
    with view.running_dashboard(db, tmp_path / "dashboard.log") as dash:
        driver = view.browser(tmp_path / "profile")
        try:
            view.first_view_s(driver, dash.url)
            wait_for_text(driver, "SYM000 · 1 min bars")
            png = driver.get_screenshot_as_png()
            (tmp_path / "dashboard.png").write_bytes(png)
            # Rising and falling candles (and volume bars) are on the screen, not a blank page.
            assert colour_share(png, UP) > 0.002
            assert colour_share(png, DOWN) > 0.002
            # The panels' own colours: RSI, volatility and the VWAP overlay lines.
            for line in ("#7e57c2", "#8d6e63", "#ab47bc"):
                assert colour_share(png, line) > 0.0002, line
            # Pick another symbol as a person does: open the picker, type, Enter.
            picker = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')[0]
            picker.click()
            field = picker.find_element(By.TAG_NAME, "input")
            field.send_keys("SYM002")
            field.send_keys(Keys.ENTER)
            wait_for_text(driver, "SYM002 · 1 min bars")
            assert "symbol=SYM002" in driver.current_url  # a view one can share
            assert driver.find_elements(By.CSS_SELECTOR, view.CANDLES)
            # And the URL alone opens that view.
            view.first_view_s(driver, f"{dash.url}/?symbol=SYM001")
            wait_for_text(driver, "SYM001 · 1 min bars")
        finally:
            driver.quit()


def test_a_missing_store_is_one_line_saying_what_creates_it(tmp_path: Path) -> None:
    with view.running_dashboard(tmp_path / "none.duckdb", tmp_path / "dashboard.log") as dash:
        driver = view.browser(tmp_path / "profile")
        try:
            driver.get(dash.url)
            # (the page renders the command's backticks as code)
            wait_for_text(driver, "the features job creates it (marketpipe features)")
        finally:
            driver.quit()
    assert not (tmp_path / "none.duckdb").exists()
