"""The features job's shared range cache: what one query read serves the other, exactly."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pyarrow as pa
import pytest

from marketpipe.features.ranges import Chunk, Fetch, RangeCache


def chunk(start: int, end: int, skip: frozenset[int] = frozenset()) -> Chunk:
    """Records at every offset of ``[start, end)`` but ``skip`` (transaction markers)."""
    offsets = np.array([o for o in range(start, end) if o not in skip], np.int64)
    return Chunk(start, end, offsets, pa.table({"offset": offsets}))


def offsets(pieces: list[Chunk | tuple[int, int]]) -> list[object]:
    return [p if isinstance(p, tuple) else p.ticks.column("offset").to_pylist() for p in pieces]


def test_a_range_is_served_from_what_was_read_and_the_gaps_are_left_to_fetch() -> None:
    cache = RangeCache(["features", "archive"])
    cache.put(0, chunk(10, 20, frozenset({14})))  # a marker at 14: no record there
    cache.put(0, chunk(30, 35))
    assert offsets(cache.plan(0, 12, 32)) == [
        [12, 13, 15, 16, 17, 18, 19], (20, 30), [30, 31],
    ]  # fmt: skip
    assert offsets(cache.plan(0, 0, 10)) == [(0, 10)]
    assert offsets(cache.plan(0, 35, 40)) == [(35, 40)]
    assert offsets(cache.plan(1, 10, 20)) == [(10, 20)]  # another partition
    assert offsets(cache.plan(0, 14, 15)) == [[]]  # only the marker


def test_what_every_reader_has_read_is_dropped() -> None:
    cache = RangeCache(["features", "archive"])
    cache.put(0, chunk(0, 10))
    cache.put(0, chunk(10, 20))
    cache.read("features", 0, 20)
    assert cache.rows == 20  # the archive has not read them yet
    cache.read("archive", 0, 10)
    assert cache.rows == 10
    assert offsets(cache.plan(0, 0, 20)) == [(0, 10), list(range(10, 20))]
    cache.read("archive", 0, 20)
    assert cache.rows == 0


def test_the_oldest_go_first_past_the_row_cap() -> None:
    cache = RangeCache(["features", "archive"], max_rows=25)
    for start in (0, 10, 20):
        cache.put(0, chunk(start, start + 10))
    assert cache.rows == 20
    assert offsets(cache.plan(0, 0, 30)) == [(0, 10), list(range(10, 20)), list(range(20, 30))]


def test_an_overlapping_chunk_is_not_kept_twice() -> None:
    cache = RangeCache(["features", "archive"])
    cache.put(0, chunk(0, 10))
    cache.put(0, chunk(5, 15))  # both readers fetched one gap at once
    assert cache.rows == 10


@pytest.mark.parametrize("seed", range(5))
def test_any_split_of_a_range_reads_back_exactly_its_records(seed: int) -> None:
    rng = np.random.default_rng(seed)
    markers = frozenset(rng.choice(200, 30, replace=False).tolist())
    cache = RangeCache(["a", "b"])
    edges = sorted({0, 200, *rng.choice(200, 8, replace=False).tolist()})
    for start, end in itertools.pairwise(edges):
        if rng.random() < 0.6:
            cache.put(0, chunk(start, end, markers))
    for _ in range(20):
        lo, hi = sorted(rng.choice(201, 2, replace=False).tolist())
        got: list[int] = []
        for piece in cache.plan(0, lo, hi):
            got += (
                (chunk(*piece, markers) if isinstance(piece, tuple) else piece)
                .ticks.column("offset")
                .to_pylist()
            )
        assert got == [o for o in range(lo, hi) if o not in markers]


def test_a_range_one_reader_is_fetching_is_waited_for_not_fetched_again() -> None:
    cache = RangeCache(["features", "archive"])
    cache.put(0, chunk(40, 50))
    mine = cache.take("archive", 0, 10, 60)
    # The gap up to what is cached is the archive's to fetch.
    assert isinstance(mine, Fetch)
    assert (mine.reader, mine.start, mine.end) == ("archive", 10, 40)
    # The features reader, from inside it, is told to wait for it...
    assert cache.take("features", 0, 20, 60) is mine
    # ... but before it, and after what is cached, the gaps are its own.
    before = cache.take("features", 0, 0, 60)
    assert isinstance(before, Fetch)
    assert (before.reader, before.start, before.end) == ("features", 0, 10)
    after = cache.take("features", 0, 50, 60)
    assert isinstance(after, Fetch)
    assert (after.start, after.end) == (50, 60)
    cached = cache.take("features", 0, 45, 60)
    assert offsets([cached]) == [list(range(45, 50))]  # type: ignore[list-item]

    def fetch() -> None:
        cache.put(0, chunk(10, 40))
        cache.fetched(0, mine)

    waiter = threading.Thread(target=mine.done.wait)
    waiter.start()
    threading.Timer(0.05, fetch).start()
    waiter.join(5)
    assert not waiter.is_alive()
    assert offsets([cache.take("features", 0, 20, 60)]) == [list(range(20, 40))]  # type: ignore[list-item]


def test_a_failed_fetch_leaves_the_range_to_the_next_reader() -> None:
    cache = RangeCache(["features", "archive"])
    failed = cache.take("archive", 0, 0, 10)
    assert isinstance(failed, Fetch)
    cache.fetched(0, failed)  # nothing put: the fetch failed
    assert failed.done.is_set()
    again = cache.take("features", 0, 5, 10)
    assert isinstance(again, Fetch)
    assert (again.reader, again.start, again.end) == ("features", 5, 10)
