"""The features job's open windows saved per micro-batch, and read back after a restart."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.features.aggregate import OpenWindows, Windows, step
from marketpipe.features.state import MissingState, StateStore, state_root

T0 = 1_709_908_200_000_000


WINDOWS = Windows.of([1], (10, 5))


def some_windows() -> OpenWindows:
    ticks = pa.Table.from_pylist(
        [{"symbol": "X", "event_time": T0 + i * 400_000, "seq": i, "price": 10.0 + i,
          "size": 1.0, "bid": 9.9, "ask": 10.1} for i in range(5)]
    )  # fmt: skip
    return step(ticks, OpenWindows.empty(), WINDOWS).open


def test_what_is_saved_after_a_batch_is_read_back(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "windows"), WINDOWS)
    saved = some_windows()
    store.save(7, saved)
    got = StateStore(str(tmp_path / "windows"), WINDOWS).load(7)  # another process, after a restart
    assert got.partials.equals(saved.partials)
    assert got.points.equals(saved.points)
    assert got.points.num_rows == 5


def test_the_two_newest_batches_are_kept(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), WINDOWS)
    for batch_id in range(4):
        store.save(batch_id, some_windows())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2.partials.arrow", "2.points.arrow", "3.partials.arrow", "3.points.arrow",
    ]  # fmt: skip
    store.load(2)  # what a replay of batch 3 starts from


def test_missing_windows_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MissingState, match=r"no saved windows for micro-batch 4 in .*checkpoint"):
        StateStore(str(tmp_path), WINDOWS).load(4)


def test_where_the_windows_live() -> None:
    assert (
        state_root("s3a://b/checkpoints", "", "features") == "s3://b/checkpoints/features/windows"
    )
    assert state_root(".cp", "/data/state/", "features") == "/data/state/features"


def test_windows_saved_for_other_settings_are_refused(tmp_path: Path) -> None:
    """A 10 s bucket's ticks read back as 5 s buckets would mix into the wrong m2."""
    StateStore(str(tmp_path), WINDOWS).save(3, some_windows())
    other = Windows.of([1], (10, 10))  # buckets of 10 s instead of 5 s
    with pytest.raises(MissingState, match="are bars of 1 s and 5 s buckets, the settings now"):
        StateStore(str(tmp_path), other).load(3)
