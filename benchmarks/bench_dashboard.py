"""How fast the dashboard draws its first view, on a trading day of 1-second bars.

For each hot store (a baseline of 5 symbols x 1 hour, then the target: 50 symbols x 24 hours
of 1 s bars, 4.3M rows, with their 1 min bars, sliding windows and indicators), start
`marketpipe dashboard` as a user does and open it in headless Chromium:

- first visit: a new browser profile, so Streamlit's and Plotly's scripts (~6 MB) are fetched
  and compiled, as on anyone's first visit;
- returning visit: a new browser process on the same profile (its HTTP cache warm);
- next symbol: another symbol in the open page.

Each figure is the time from asking for the URL until the candlesticks are drawn; medians of
``--runs``, and the day's ratio to the baseline (same session, same machine)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dashboard_view import browser, first_view_s, running_dashboard, write_day

TARGET_S = 2.0


def measure(db: Path, work: Path, runs: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {"first visit": [], "returning visit": [], "next symbol": []}
    with running_dashboard(db, work / f"{db.stem}.log") as dash:
        for run in range(runs):
            profile = work / f"{db.stem}-profile-{run}"
            driver = browser(profile)
            try:
                figures["first visit"].append(first_view_s(driver, f"{dash.url}/?symbol=SYM001"))
            finally:
                driver.quit()
            driver = browser(profile)
            try:
                figures["returning visit"].append(
                    first_view_s(driver, f"{dash.url}/?symbol=SYM002")
                )
                figures["next symbol"].append(first_view_s(driver, f"{dash.url}/?symbol=SYM003"))
            finally:
                driver.quit()
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=86_400, help="1 s bars per symbol")
    parser.add_argument("--smoke", action="store_true", help="tiny stores, one run")
    parser.add_argument(
        "--running-services", action="store_true",
        help="accepted as by every benchmark; this one needs none (its store is a DuckDB file)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.symbols, args.seconds = 1, 4, 600
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        work = Path(tmp)
        stores = {"baseline": (5, min(3_600, args.seconds)), "day": (args.symbols, args.seconds)}
        results = {}
        for name, (symbols, seconds) in stores.items():
            db = work / f"s{symbols}-{seconds}.duckdb"
            started = time.perf_counter()
            write_day(db, symbols, seconds)
            print(f"{name}: {symbols} symbols x {seconds:,} s: {symbols * seconds:,} 1 s bars in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            results[name] = measure(db, work, args.runs)
    print(f"\nfirst view (s, median of {args.runs}; target < {TARGET_S:g} s on the day)")
    base, day = results.values()
    print(f"{'':18}{'baseline':>10}{'day':>10}{'day/baseline':>14}")
    for figure in base:
        ratio = day[figure] / base[figure]
        print(f"{figure:18}{base[figure]:10.2f}{day[figure]:10.2f}{ratio:14.2f}")


if __name__ == "__main__":
    main()
