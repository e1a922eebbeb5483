"""What the features job writes, as Arrow tables: pure helpers shared with the backfill.

- ``windows_of``/``bar_intervals``: the windows the settings ask for.
- ``split``/``bar_outputs``: a batch's rows per output and table.
- ``with_written_at``/``as_rows``: rows stamped and shaped for the sinks.
- ``indicator_rows``: indicators on closed bars, continued from the stored state.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.features.aggregate import (
    BAR_COLUMNS,
    BARS_KIND,
    BUCKET_COLUMNS,
    BUCKET_KIND,
    Windows,
)
from marketpipe.features.indicators import extend_series
from marketpipe.settings import FeaturesSettings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.tables import BARS, WINDOW_BUCKETS, TableSpec


def with_written_at(batch: pa.Table, table: TableSpec, written_at: datetime) -> pa.Table:
    """The batch's columns in ``table`` order, ``written_at`` stamped on every row."""
    stamp = pa.array([written_at] * batch.num_rows, pa.timestamp("us", tz="UTC"))
    return batch.append_column("written_at", stamp).select(list(table.columns))


def as_rows(table: pa.Table) -> list[tuple[object, ...]]:
    return list(zip(*(col.to_pylist() for col in table.columns), strict=True))


def indicator_rows(
    closed_bars: pa.Table, sinks: FeatureSinks, written_at: datetime
) -> list[tuple[object, ...]]:
    """Indicators for closed bars, each symbol continued from its stored state."""
    closes = list(
        zip(
            closed_bars.column("symbol").to_pylist(),
            closed_bars.column("window_start").to_pylist(),
            closed_bars.column("close").to_pylist(),
            strict=True,
        )
    )
    firsts: dict[str, datetime] = {}
    for symbol, start, _ in closes:
        firsts[symbol] = min(start, firsts.get(symbol, start))
    prior = sinks.states_before(firsts)
    return [(*row, written_at) for row in extend_series(closes, prior)]


def bar_intervals(cfg: FeaturesSettings) -> list[int]:
    """The bars the job computes: every configured interval and the indicators' one."""
    return sorted({*cfg.bar_intervals_s, cfg.indicator_interval_s})


def windows_of(cfg: FeaturesSettings) -> Windows:
    """The windows the job computes: bars of every interval, the buckets of the sliding ones."""
    return Windows.of(bar_intervals(cfg), (cfg.window_length_s, cfg.window_slide_s))


#: The tick columns the features query folds into its windows (``aggregate.step``).
AGGREGATED = ("symbol", "event_time", "seq", "price", "size", "bid", "ask")


def bar_outputs(bars: pa.Table) -> list[tuple[str, pa.Table]]:
    """Bars rows per interval, as (output name ``bars_<n>s``, rows), shortest first."""
    intervals = bars.column("interval_seconds")
    return [
        (f"bars_{n}s", bars.filter(pc.equal(intervals, n)))
        for n in sorted(pc.unique(intervals).to_pylist())
    ]


def split(batch: pa.Table) -> list[tuple[str, TableSpec, pa.Table]]:
    """A ``features`` batch as (output name, table, rows in the table's columns but
    ``written_at``): bars per interval (``bars_<n>s``), then ``window_buckets``."""
    kinds = batch.column("kind")
    bar_rows = batch.filter(pc.equal(kinds, BARS_KIND)).select(list(BAR_COLUMNS))
    out = [(name, BARS, rows) for name, rows in bar_outputs(bar_rows)]
    found = batch.filter(pc.equal(kinds, BUCKET_KIND))
    if found.num_rows:
        out.append(("window_buckets", WINDOW_BUCKETS, found.select(list(BUCKET_COLUMNS))))
    return out
