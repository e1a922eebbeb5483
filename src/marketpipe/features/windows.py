"""Sliding-window features combined from their buckets: pure Python on Arrow tables, no I/O.

A window ``[s, s + length)`` (``s`` a multiple of the slide) is a run of whole buckets
(``aggregate``'s buckets: tumbling, ``gcd(length, slide)`` long). Per window:

- ``ticks``: the sum of the buckets' tick counts; ``last_event_time`` their latest.
- ``log_return = ln(last price / first price)``: the last bucket's close over the first's open.
- ``volatility``: the sample standard deviation of the log returns between consecutive ticks,
  null below 3 ticks. The window's returns are those inside each bucket (a bucket gives their
  count ``n - 1``, their mean ``ln(close / open) / (n - 1)`` and ``m2``, the sum of their squared
  deviations from that mean) and one return between each pair of consecutive buckets
  (``ln(open / previous close)``). The sets are merged with Chan et al.'s pairwise update
  (``m2 = m2_a + m2_b + delta**2 * n_a * n_b / n``), which is as exact as two passes over the
  returns, unlike the sum-of-squares formula.

The job combines the buckets a micro-batch touched with their neighbours read back from the hot
store; the backfill combines every bucket of its range. Both call ``combine``, so for closed
windows they give the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pyarrow as pa

from marketpipe.sinks.tables import WINDOW_FEATURES, arrow_schema

US = 1_000_000

#: What ``combine`` returns: the window_features table's columns but the write time.
WINDOW_SCHEMA = pa.schema([f for f in arrow_schema(WINDOW_FEATURES) if f.name != "written_at"])


def window_starts(bucket_start_us: int, length_us: int, slide_us: int) -> range:
    """Starts of the windows that hold the bucket starting at ``bucket_start_us``."""
    last = bucket_start_us - bucket_start_us % slide_us
    return range(last, bucket_start_us - length_us, -slide_us)


def span(bucket_starts_us: Iterable[int], length_us: int, slide_us: int) -> tuple[int, int]:
    """(earliest start, latest end) of the windows holding any of these buckets: the buckets
    to read back to combine them."""
    starts = list(bucket_starts_us)
    first = min(starts)
    earliest = first - first % slide_us - (math.ceil(length_us / slide_us) - 1) * slide_us
    last = max(starts)
    return earliest, last - last % slide_us + length_us


def _merge(
    a: tuple[int, float, float], n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Chan's pairwise update of (count, mean, m2) with another set's."""
    n_a, mean_a, m2_a = a
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


def combine(
    buckets: pa.Table,
    length_s: int,
    slide_s: int,
    touching: pa.Table | None = None,
) -> pa.Table:
    """Window features from ``buckets`` (columns symbol, window_start, open, close, trades, m2,
    last_event_time; one bucket size). With ``touching`` (buckets, same columns), only the
    windows that hold one of those; otherwise every window that holds a bucket. A window is
    complete only if ``buckets`` has all its buckets: the caller reads enough (``span``)."""
    length, slide = length_s * US, slide_s * US
    symbols = buckets.column("symbol").to_pylist()
    starts = buckets.column("window_start").cast(pa.int64()).to_pylist()
    opens = buckets.column("open").to_pylist()
    closes = buckets.column("close").to_pylist()
    counts = buckets.column("trades").to_pylist()
    m2s = buckets.column("m2").to_pylist()
    lasts = buckets.column("last_event_time").cast(pa.int64()).to_pylist()

    members: dict[tuple[str, int], list[int]] = {}
    for i in sorted(range(len(starts)), key=lambda i: (symbols[i], starts[i])):
        for ws in window_starts(starts[i], length, slide):
            members.setdefault((symbols[i], ws), []).append(i)
    wanted: set[tuple[str, int]] | None = None
    if touching is not None:
        wanted = set()
        for symbol, start in zip(
            touching.column("symbol").to_pylist(),
            touching.column("window_start").cast(pa.int64()).to_pylist(),
            strict=True,
        ):
            wanted.update((symbol, ws) for ws in window_starts(start, length, slide))

    out: dict[str, list[object]] = {f.name: [] for f in WINDOW_SCHEMA}
    for (symbol, ws), parts in sorted(members.items()):
        if wanted is not None and (symbol, ws) not in wanted:
            continue
        returns = (0, 0.0, 0.0)
        previous_close: float | None = None
        for i in parts:
            if previous_close is not None:
                returns = _merge(returns, 1, math.log(opens[i] / previous_close), 0.0)
            inside = counts[i] - 1
            if inside > 0:
                returns = _merge(returns, inside, math.log(closes[i] / opens[i]) / inside, m2s[i])
            previous_close = closes[i]
        ticks = sum(counts[i] for i in parts)
        out["symbol"].append(symbol)
        out["window_start"].append(ws)
        out["window_end"].append(ws + length)
        out["log_return"].append(math.log(closes[parts[-1]] / opens[parts[0]]))
        out["volatility"].append(math.sqrt(returns[2] / (returns[0] - 1)) if ticks >= 3 else None)
        out["ticks"].append(ticks)
        out["last_event_time"].append(max(lasts[i] for i in parts))
    return pa.table(
        [pa.array(out[f.name], pa.int64() if f.type == pa.timestamp("us", tz="UTC") else f.type)
         .cast(f.type) for f in WINDOW_SCHEMA],
        WINDOW_SCHEMA,
    )  # fmt: skip
