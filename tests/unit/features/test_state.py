"""The features job's open windows saved per micro-batch, and read back after a restart."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.features.aggregate import OpenWindows, Step, Windows, step
from marketpipe.features.state import MissingState, StateStore, state_root

T0 = 1_709_908_200_000_000
SEC = 1_000_000
WINDOWS = Windows.of([1], (10, 5))
DELAY = 2 * SEC


def batches(count: int, per_batch: int, seed: int = 1) -> list[pa.Table]:
    """Ticks of two symbols, half a second of event time per batch, a few late ones."""
    rng = random.Random(seed)
    out, seq = [], 0
    for b in range(count):
        rows = []
        for _ in range(per_batch):
            late = rng.random() < 0.1
            t = T0 + b * SEC // 2 + rng.randrange(SEC // 2) - (SEC if late else 0)
            price = 10.0 + rng.random()
            rows.append({"symbol": rng.choice("XY"), "event_time": t, "seq": seq,
                         "price": price, "size": 1.0, "bid": 9.9, "ask": 10.1})  # fmt: skip
            seq += 1
        out.append(pa.Table.from_pylist(rows))
    return out


def run(store: StateStore, ticks: list[pa.Table]) -> list[Step]:
    """The job's loop: fold each batch, save after it."""
    steps, open_, seen = [], OpenWindows.empty(), None
    for batch_id, batch in enumerate(ticks):
        done = step(batch, open_, WINDOWS, seen, DELAY)
        store.save(batch_id, done.open, done.added, open_)
        steps.append(done)
        open_, seen = done.open, done.base_us
    return steps


def same(a: OpenWindows, b: OpenWindows) -> bool:
    return a.partials.sort_by([("kind", "ascending"), ("interval_seconds", "ascending"),
                               ("symbol", "ascending"), ("start_us", "ascending")]).equals(
        b.partials.sort_by([("kind", "ascending"), ("interval_seconds", "ascending"),
                            ("symbol", "ascending"), ("start_us", "ascending")])
    ) and a.points.equals(b.points)  # fmt: skip


def test_every_batch_s_windows_read_back_are_those_it_left(tmp_path: Path) -> None:
    """After each batch, what another process reads back (a restart) equals what the job
    holds in memory, the last two batches' included (a replay starts from the one before)."""
    store = StateStore(str(tmp_path), WINDOWS)
    steps = run(store, batches(30, 40))
    assert steps[-1].open.point_count > 0
    for batch_id in (28, 29):
        assert same(StateStore(str(tmp_path), WINDOWS).load(batch_id), steps[batch_id].open)


def test_only_what_the_two_newest_batches_need_is_kept(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), WINDOWS)
    run(store, batches(30, 40))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if "partials" in n] == ["28.partials.arrow", "29.partials.arrow"]
    kept = [int(n.split(".")[0]) for n in names if ".points." in n]
    # 5 s buckets, 2 s delay, half a second per batch: ticks of about a dozen batches.
    assert 8 <= len(kept) <= 16, names
    assert max(kept) == 29


def test_a_lost_file_of_ticks_is_noticed(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), WINDOWS)
    run(store, batches(12, 40))
    (tmp_path / next(p.name for p in sorted(tmp_path.iterdir()) if ".points." in p.name)).unlink()
    with pytest.raises(MissingState, match="lack ticks of open buckets"):
        store.load(11)


def test_missing_windows_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        MissingState, match=r"no saved windows \(4.partials.arrow\) in .*checkpoint"
    ):
        StateStore(str(tmp_path), WINDOWS).load(4)


def test_windows_saved_for_other_settings_are_refused(tmp_path: Path) -> None:
    """A 5 s bucket's ticks read back as 10 s buckets would mix into the wrong m2."""
    run(StateStore(str(tmp_path), WINDOWS), batches(4, 10))
    other = Windows.of([1], (10, 10))  # buckets of 10 s instead of 5 s
    with pytest.raises(MissingState, match="are bars of 1 s and 5 s buckets, the settings now"):
        StateStore(str(tmp_path), other).load(3)


def test_where_the_windows_live() -> None:
    assert (
        state_root("s3a://b/checkpoints", "", "features") == "s3://b/checkpoints/features/windows"
    )
    assert state_root(".cp", "/data/state/", "features") == "/data/state/features"
