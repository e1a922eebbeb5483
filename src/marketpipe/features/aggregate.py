"""Bars and window buckets from ticks, one micro-batch at a time: Arrow tables in and out, no
Spark, no I/O.

Each tick belongs to one bar per interval and to one bucket (a tumbling window of
``gcd(length, slide)`` seconds, what ``windows.combine`` builds the sliding windows from). A
window is keyed ``(kind, interval_seconds, symbol, window_start)`` with ``kind`` ``bars`` or
``bucket``. Per window:

- bars: open/close (and last bid/ask) are the first/last tick by ``(event_time, seq)``; high,
  low; ``volume = sum(size)``; ``trades``; ``vwap = sum(price * size) / sum(size)`` over ticks
  with a size; ``mean_spread`` the mean of ``ask - bid``; ``last_event_time`` the newest event
  time, which with the row's ``written_at`` gives the end-to-end latency of the newest tick.
- buckets: the same, and ``m2``, the sum of squared deviations from their mean of the log
  returns between the bucket's consecutive ticks ordered by ``(event_time, seq)``.

``step`` folds one micro-batch into the windows still open (``OpenWindows``) and returns the rows
of every window the batch touched, as they stand with the batch (a window's row is rewritten
until it closes; upserts by key land each rewrite on the same row), and the windows still open
after it. Bars need only running aggregates (first and last by order, sums, extremes), which
merge exactly whatever order the ticks arrive in. A bucket's ``m2`` depends on which ticks are
consecutive, which a late tick can change, so the open buckets keep their ticks (event time, seq,
price) and a touched bucket's returns are recomputed from all of them.

The event-time watermark is kept by the caller: ``base - delay``, the base by default the newest
event time of the batches before (Spark's rule), in the job the slowest partition's
(``watermark``). A tick's copy for a window that ends at or before it is dropped (and
counted), and a window is forgotten once the watermark after the batch has passed its end: no
later tick can reach it. The job keeps ``OpenWindows`` between micro-batches (``state``); the
backfill folds all its ticks in one step with no watermark. So for closed windows both give
the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.sinks.tables import ARROW_TYPES, BARS, WINDOW_BUCKETS

US = 1_000_000
BARS_KIND, BUCKET_KIND = "bars", "bucket"

#: Columns of a bars row and of a bucket row: their tables' but the write time.
BAR_COLUMNS = tuple(c for c in BARS.columns if c != "written_at")
BUCKET_COLUMNS = tuple(c for c in WINDOW_BUCKETS.columns if c != "written_at")

KEY = ("kind", "interval_seconds", "symbol", "start_us")

#: A window's running aggregates: everything its row is made of, and mergeable.
PARTIAL_SCHEMA = pa.schema(
    [
        ("kind", pa.string()), ("interval_seconds", pa.int32()), ("symbol", pa.string()),
        ("start_us", pa.int64()),
        ("open", pa.float64()), ("open_t", pa.int64()), ("open_seq", pa.int64()),
        ("close", pa.float64()), ("close_t", pa.int64()), ("close_seq", pa.int64()),
        ("last_bid", pa.float64()), ("last_ask", pa.float64()),
        ("high", pa.float64()), ("low", pa.float64()), ("volume", pa.float64()),
        ("trades", pa.int64()), ("pv", pa.float64()), ("spread_sum", pa.float64()),
        ("spread_n", pa.int64()), ("last_event_us", pa.int64()),
    ]
)  # fmt: skip

#: An open bucket's ticks, what its ``m2`` is recomputed from.
POINT_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("start_us", pa.int64()), ("event_time", pa.int64()),
     ("seq", pa.int64()), ("price", pa.float64())]
)  # fmt: skip

#: What ``step`` returns per touched window: ``kind``, the bars columns and ``m2`` (null for bars).
ROW_SCHEMA = pa.schema(
    [("kind", pa.string())] + [(c, ARROW_TYPES[c]) for c in BAR_COLUMNS] + [("m2", pa.float64())]
)


@dataclass(frozen=True)
class Windows:
    """Which windows to compute: bars of each interval, and buckets of ``bucket_s`` (or none)."""

    bar_intervals_s: tuple[int, ...]
    bucket_s: int | None

    def __post_init__(self) -> None:
        if not self.bar_intervals_s and self.bucket_s is None:
            raise ValueError("features: no bar interval and no sliding window asked for")

    @classmethod
    def of(cls, bar_intervals_s: Sequence[int], sliding: tuple[int, int] | None) -> Windows:
        """Bars of ``bar_intervals_s`` and the buckets of sliding windows ``(length, slide)``."""
        bucket = None if sliding is None else bucket_seconds(*sliding)
        return cls(tuple(sorted(set(bar_intervals_s))), bucket)

    def specs(self) -> list[tuple[str, int]]:
        out = [(BARS_KIND, n) for n in self.bar_intervals_s]
        return out + ([] if self.bucket_s is None else [(BUCKET_KIND, self.bucket_s)])


def bucket_seconds(length_s: int, slide_s: int) -> int:
    """The bucket of sliding windows ``length_s`` long every ``slide_s``: each window is a
    whole number of them."""
    return math.gcd(length_s, slide_s)


#: An open bucket's ticks in order: event times, seqs and prices, by ``(event_time, seq, price)``.
BucketTicks = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class OpenWindows:
    """The windows a watermark has not closed yet: their running aggregates (``PARTIAL_SCHEMA``)
    and each open bucket's ticks, by ``(symbol, start_us)``. Never changed once made: ``step``
    builds a new one (a batch retried in the same process starts from the same windows)."""

    partials: pa.Table
    buckets: Mapping[tuple[str, int], BucketTicks]

    @classmethod
    def empty(cls) -> OpenWindows:
        return cls(PARTIAL_SCHEMA.empty_table(), {})

    @property
    def point_count(self) -> int:
        return sum(len(t) for t, _, _ in self.buckets.values())

    @property
    def points(self) -> pa.Table:
        """The open buckets' ticks as one table (``POINT_SCHEMA``), what ``state`` saves."""
        keys = sorted(self.buckets)
        sizes = [len(self.buckets[k][0]) for k in keys]
        if not keys:
            return POINT_SCHEMA.empty_table()
        columns = [np.concatenate([self.buckets[k][i] for k in keys]) for i in range(3)]
        which = pa.array(np.repeat(np.arange(len(keys)), sizes))
        symbols = pa.array([k[0] for k in keys], pa.string()).take(which)
        starts = np.repeat(np.array([k[1] for k in keys], np.int64), sizes)
        return pa.table([symbols, pa.array(starts), *columns], schema=POINT_SCHEMA)

    @classmethod
    def from_tables(cls, partials: pa.Table, points: pa.Table) -> OpenWindows:
        """The windows ``points`` (any order) and ``partials`` describe: ``points``' inverse."""
        return cls(partials, dict(_by_bucket(points)))


@dataclass(frozen=True)
class Step:
    """One micro-batch folded in: the touched windows' rows (``ROW_SCHEMA``), the windows open
    after it, the window copies dropped behind the watermark, and the base of the next batch's
    watermark (None: none yet)."""

    rows: pa.Table
    open: OpenWindows
    dropped: int
    base_us: int | None
    added: pa.Table  # the buckets' ticks this batch brought (``POINT_SCHEMA``)


def step(
    ticks: pa.Table, before: OpenWindows, windows: Windows,
    seen_us: int | None = None, delay_us: int | None = None, base_us: int | None = None,
) -> Step:  # fmt: skip
    """Fold ``ticks`` (at least ``AGGREGATED``'s columns) into the ``before`` windows.

    ``seen_us`` is the base of this batch's watermark (None: none yet) and ``delay_us`` the
    watermark delay: the watermark is ``seen_us - delay_us``. ``base_us`` is the base of the
    next batch's (windows it passes are forgotten), by default the newest event time seen,
    this batch's included; it never goes below ``seen_us``. With ``delay_us`` None there is
    no watermark at all (the backfill): nothing is dropped or forgotten."""
    watermark = None if seen_us is None or delay_us is None else seen_us - delay_us
    ordered = _in_order(ticks)
    if base_us is None:
        base_us = pc.max(ordered.column("event_time")).as_py() if ordered.num_rows else None
    base = max((x for x in (seen_us, base_us) if x is not None), default=None)
    fresh, points, dropped = [], None, 0
    for kind, n in windows.specs():
        starts = _starts(ordered.column("event_time"), n)
        keep = None if watermark is None else pc.greater(pc.add(starts, n * US), watermark)
        if keep is not None:
            dropped += len(keep) - (pc.sum(keep).as_py() or 0)
        fresh.append(_partials(ordered, starts, keep, kind, n))
        if kind == BUCKET_KIND:
            taken = ordered.select(["symbol", "event_time", "seq", "price"])
            taken = taken.add_column(1, "start_us", starts)
            points = taken if keep is None else taken.filter(keep)
    batch = pa.concat_tables(fresh) if fresh else PARTIAL_SCHEMA.empty_table()
    touched = batch.select(list(KEY))
    merged = _merge(before.partials, batch)
    buckets, m2 = _extend(before.buckets, points)
    rows = _rows(merged.join(touched, list(KEY), join_type="left semi"), m2)
    after = OpenWindows(merged, buckets)
    if base is not None and delay_us is not None:
        after = _evict(after, base - delay_us, windows)
    added = POINT_SCHEMA.empty_table() if points is None else points.cast(POINT_SCHEMA)
    return Step(rows, after, dropped, base, added)


def _by_bucket(points: pa.Table) -> Iterator[tuple[tuple[str, int], BucketTicks]]:
    """``points`` per bucket, each bucket's ticks by ``(event_time, seq, price)``."""
    if not points.num_rows:
        return
    points = points.sort_by([("symbol", "ascending"), ("start_us", "ascending"),
                             ("event_time", "ascending"), ("seq", "ascending"),
                             ("price", "ascending")])  # fmt: skip
    firsts = np.flatnonzero(np.diff(_runs(points), prepend=-1))
    heads = points.take(pa.array(firsts))
    keys = zip(heads.column("symbol").to_pylist(), heads.column("start_us").to_pylist(),
               strict=True)  # fmt: skip
    columns = [points.column(c).to_numpy() for c in ("event_time", "seq", "price")]
    ends = [*firsts.tolist()[1:], points.num_rows]
    for key, lo, hi in zip(keys, firsts.tolist(), ends, strict=True):
        yield key, (columns[0][lo:hi], columns[1][lo:hi], columns[2][lo:hi])


def _extend(
    before: Mapping[tuple[str, int], BucketTicks], points: pa.Table | None
) -> tuple[dict[tuple[str, int], BucketTicks], dict[tuple[str, int], float]]:
    """The open buckets with ``points`` added (a new mapping: ``before`` stays as it was), and
    the ``m2`` of every bucket the points touched. Ticks arriving after a bucket's last one
    (the usual case) are appended; a late one re-sorts that bucket alone."""
    buckets = dict(before)
    m2: dict[tuple[str, int], float] = {}
    if points is None:
        return buckets, m2
    for key, added in _by_bucket(points):
        ticks = added if key not in buckets else _append(buckets[key], added)
        buckets[key] = ticks
        m2[key] = _bucket_m2(ticks[2])
    return buckets, m2


def _append(ticks: BucketTicks, added: BucketTicks) -> BucketTicks:
    """A bucket's ticks with ``added`` (in order among themselves), still in order."""
    joined = tuple(np.concatenate([a, b]) for a, b in zip(ticks, added, strict=True))
    t, q, p = joined
    first_added = tuple(x[0] for x in added)
    if first_added >= tuple(x[-1] for x in ticks):
        return t, q, p
    order = np.lexsort((p, q, t))  # a late tick: sort this bucket again
    return t[order], q[order], p[order]


def _in_order(ticks: pa.Table) -> pa.Table:
    """The ticks by ``(event_time, seq, price)``: within any window, first to last."""
    order = pc.sort_indices(
        ticks, [("event_time", "ascending"), ("seq", "ascending"), ("price", "ascending")]
    )
    return ticks.take(order)


def _starts(event_time: pa.ChunkedArray, interval_s: int) -> pa.Array:
    times = event_time.to_numpy()
    width = interval_s * US
    return pa.array(times - times % width, pa.int64())


def _partials(
    ticks: pa.Table, starts: pa.Array, keep: pa.Array | None, kind: str, interval_s: int
) -> pa.Table:
    """Each window's aggregates over ``ticks`` (in order), the copies ``keep`` drops left out."""
    price, size = ticks.column("price"), ticks.column("size")
    bid, ask = ticks.column("bid"), ticks.column("ask")
    frame = pa.table(
        {
            "symbol": ticks.column("symbol"), "start_us": starts, "price": price,
            "t": ticks.column("event_time"), "seq": ticks.column("seq"), "size": size,
            "pv": pc.multiply(price, size), "spread": pc.subtract(ask, bid),
            "bid": bid, "ask": ask,
        }
    )  # fmt: skip
    if keep is not None:
        frame = frame.filter(keep)
    got = frame.group_by(["symbol", "start_us"], use_threads=False).aggregate(
        [
            ("price", "first"), ("t", "first"), ("seq", "first"),
            ("price", "last"), ("t", "last"), ("seq", "last"), ("bid", "last"), ("ask", "last"),
            ("price", "max"), ("price", "min"), ("size", "sum"), ([], "count_all"),
            ("pv", "sum"), ("spread", "sum"), ("spread", "count"), ("t", "max"),
        ]
    )  # fmt: skip
    n = got.num_rows
    return pa.table(
        [
            pa.array([kind] * n, pa.string()), pa.array([interval_s] * n, pa.int32()),
            got.column("symbol"), got.column("start_us"),
            got.column("price_first"), got.column("t_first"), got.column("seq_first"),
            got.column("price_last"), got.column("t_last"), got.column("seq_last"),
            got.column("bid_last"), got.column("ask_last"),
            got.column("price_max"), got.column("price_min"), got.column("size_sum"),
            got.column("count_all"), got.column("pv_sum"), got.column("spread_sum"),
            got.column("spread_count"), got.column("t_max"),
        ],
        schema=PARTIAL_SCHEMA,
    )  # fmt: skip


def _merge(before: pa.Table, batch: pa.Table) -> pa.Table:
    """Partials of the same window combined: one row per window of either table."""
    both = pa.concat_tables([before, batch])
    if not before.num_rows or not batch.num_rows:
        return both.combine_chunks()
    keys = list(KEY)
    by_open = both.take(
        pc.sort_indices(
            both, [("open_t", "ascending"), ("open_seq", "ascending"), ("open", "ascending")]
        )
    )
    first = by_open.group_by(keys, use_threads=False).aggregate(
        [
            ("open", "first"), ("open_t", "first"), ("open_seq", "first"),
            ("high", "max"), ("low", "min"), ("volume", "sum"), ("trades", "sum"),
            ("pv", "sum"), ("spread_sum", "sum"), ("spread_n", "sum"), ("last_event_us", "max"),
        ]
    )  # fmt: skip
    by_close = both.take(
        pc.sort_indices(
            both, [("close_t", "ascending"), ("close_seq", "ascending"), ("close", "ascending")]
        )
    )
    last = by_close.group_by(keys, use_threads=False).aggregate(
        [("close", "last"), ("close_t", "last"), ("close_seq", "last"),
         ("last_bid", "last"), ("last_ask", "last")]
    )  # fmt: skip
    joined = first.join(last, keys)
    names = {f"{c}_{a}": c for c in PARTIAL_SCHEMA.names for a in
             ("first", "last", "max", "min", "sum")}  # fmt: skip
    renamed = joined.rename_columns([names.get(c, c) for c in joined.column_names])
    return renamed.select(PARTIAL_SCHEMA.names).cast(PARTIAL_SCHEMA)


def _rows(partials: pa.Table, m2: Mapping[tuple[str, int], float]) -> pa.Table:
    """The windows' rows (``ROW_SCHEMA``): bars columns from the aggregates, ``m2`` of the
    buckets from ``m2`` (by symbol and start)."""
    partials = partials.sort_by([(c, "ascending") for c in KEY])
    starts = partials.column("start_us")
    widths = _widths(partials)
    ts = pa.timestamp("us", tz="UTC")
    volume = partials.column("volume")
    spread_n = partials.column("spread_n")
    spread = pc.divide(partials.column("spread_sum"), spread_n.cast(pa.float64()))
    mean_spread = pc.if_else(pc.greater(spread_n, 0), spread, pa.scalar(None, pa.float64()))
    columns = {
        "kind": partials.column("kind"),
        "symbol": partials.column("symbol"),
        "interval_seconds": partials.column("interval_seconds"),
        "window_start": starts.cast(ts),
        "window_end": pc.add(starts, widths).cast(ts),
        "open": partials.column("open"),
        "high": partials.column("high"),
        "low": partials.column("low"),
        "close": partials.column("close"),
        "volume": volume,
        "trades": partials.column("trades"),
        "vwap": pc.divide(partials.column("pv"), volume),
        "last_bid": partials.column("last_bid"),
        "last_ask": partials.column("last_ask"),
        "mean_spread": mean_spread,
        "last_event_time": partials.column("last_event_us").cast(ts),
        "m2": _m2(partials, m2),
    }
    return pa.table(columns, schema=ROW_SCHEMA)


def _widths(partials: pa.Table) -> pa.ChunkedArray:
    return pc.multiply(partials.column("interval_seconds").cast(pa.int64()), US)


def _m2(partials: pa.Table, m2: Mapping[tuple[str, int], float]) -> pa.Array:
    """Per row of ``partials``: a bucket's ``m2``, null for a bar."""
    is_bucket = pc.equal(partials.column("kind"), BUCKET_KIND).to_numpy(zero_copy_only=False)
    keys = zip(partials.column("symbol").to_pylist(), partials.column("start_us").to_pylist(),
               strict=True)  # fmt: skip
    values = [m2[k] if b else None for k, b in zip(keys, is_bucket, strict=True)]
    return pa.array(values, pa.float64())


def _runs(points: pa.Table) -> np.ndarray:
    """Per point (sorted by bucket): the index of its bucket's run, counting from 0."""
    n = points.num_rows
    if n == 0:
        return np.zeros(0, np.int64)
    symbol = points.column("symbol").combine_chunks()
    start = points.column("start_us").to_numpy()
    changed = pc.or_(
        pc.not_equal(symbol.slice(1), symbol.slice(0, n - 1)),
        pa.array(start[1:] != start[:-1]),
    ).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.cumsum(changed)])


def _bucket_m2(prices: np.ndarray) -> float:
    """The squared deviations of the log returns between consecutive ``prices`` from their
    mean, summed in order (0 below two ticks), as the Spark job computed it."""
    if len(prices) < 2:
        return 0.0
    returns = np.log(prices[1:] / prices[:-1])
    mean = np.cumsum(returns)[-1] / len(returns)  # cumsum: in order, as Spark's aggregate
    deviation = returns - mean
    return float(np.cumsum(deviation * deviation)[-1])


def _evict(windows: OpenWindows, watermark_us: int, spec: Windows) -> OpenWindows:
    """Forget the windows that end at or before ``watermark_us``: closed for good."""
    partials = windows.partials
    ends = pc.add(partials.column("start_us"), _widths(partials))
    if not partials.num_rows or pc.min(ends).as_py() > watermark_us:
        return windows
    open_partials = partials.filter(pc.greater(ends, watermark_us))
    width = (spec.bucket_s or 0) * US
    buckets = {k: v for k, v in windows.buckets.items() if k[1] + width > watermark_us}
    return OpenWindows(open_partials, buckets)
