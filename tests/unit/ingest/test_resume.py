"""Where each series stands: the newest tick per symbol of one source, garbage skipped."""

from __future__ import annotations

import numpy as np

from marketpipe.contracts import TickColumns
from marketpipe.ingest.resume import newest_points
from marketpipe.ingest.synthetic import ResumePoint, SymbolSpec, SyntheticMarket


def encoded(rows: list[tuple[str, int, float]], source: str) -> list[bytes]:
    return TickColumns(
        symbol=[r[0] for r in rows],
        event_time=[1_700_000_000_000_000 + r[1] for r in rows],
        seq=[r[1] for r in rows],
        price=[r[2] for r in rows],
        size=[1.0] * len(rows),
        bid=[r[2] - 0.01 for r in rows],
        ask=[r[2] + 0.01 for r in rows],
        bid_size=[None] * len(rows),
        ask_size=[None] * len(rows),
        source=source,
    ).encode()


def test_newest_tick_per_wanted_symbol_of_the_source() -> None:
    values = [
        *encoded([("AAPL", 5, 10.0), ("AAPL", 7, 11.0), ("MSFT", 3, 20.0)], "synthetic"),
        *encoded([("AAPL", 6, 10.5)], "synthetic"),  # out of order: seq 7 stays newest
        *encoded([("AAPL", 99, 1.0)], "replay"),  # another source's series
        *encoded([("TSLA", 9, 1.0)], "synthetic"),  # not wanted
        b"not json",
        None,
    ]
    found = newest_points(values, "synthetic", {"AAPL", "MSFT", "GOOG"})
    assert found == {
        "AAPL": ResumePoint(7, 11.0, 1_700_000_000_000_007),
        "MSFT": ResumePoint(3, 20.0, 1_700_000_000_000_003),
    }


def test_a_resumed_market_continues_seq_and_price() -> None:
    spec = SymbolSpec("AAPL", 100.0, 0.0, 0.3, 0.01, 2.0, 1.0, 100.0)
    market = SyntheticMarket([spec], seed=1)
    assert market.resume({"AAPL": ResumePoint(41, 250.0, 1_700_000_000_000_000)}) == 1
    batch = market.generate(np.array([1_700_000_000_100_000, 1_700_000_000_200_000]))
    assert batch.seq.tolist() == [42, 43]
    assert abs(batch.mid[0] / 250.0 - 1) < 0.01
