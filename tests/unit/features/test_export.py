"""The features job's export of closed windows to cold Parquet, in the background: the batch
that starts it does not wait for it, its progress says exported only once the files are
there, and a failed export fails the batch after it. Driven through the job's batch body
(``_write_features``) on a DuckDB file and a local cold folder, without Spark."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from marketpipe.features.aggregate import US, OpenWindows, Step, step
from marketpipe.features.job import FeatureJob
from marketpipe.features.progress import Progress
from marketpipe.settings import FeaturesSettings, KafkaSettings
from marketpipe.sinks.errors import SinkError
from marketpipe.sinks.hub import FeatureSinks
from tests.unit.features.test_aggregate import T0, table, tick

CP = "cp/features"
DELAY_S = 2


@pytest.fixture
def job(tmp_path: Path) -> Iterator[FeatureJob]:
    cfg = FeaturesSettings(
        sinks=["duckdb", "parquet"], duckdb_path=str(tmp_path / "hot.duckdb"),
        archive_root=str(tmp_path / "cold"), checkpoint_dir=str(tmp_path / "cp"),
        cold_trigger_s=10, watermark_s=DELAY_S, bar_intervals_s=[1, 60],
    )  # fmt: skip
    sinks = FeatureSinks(cfg)
    job = FeatureJob(None, KafkaSettings(), cfg, sinks)  # type: ignore[arg-type]  # no Spark here
    yield job
    job._exporter.shutdown(wait=True)
    sinks.close()


def folded(job: FeatureJob, before: Step | None, first_s: int, last_s: int) -> Step:
    """Ticks of two symbols every half second of ``[first_s, last_s)`` after T0, folded on
    ``before``'s windows as the job folds a batch."""
    ticks = [
        tick(symbol, T0 + half * US // 2, half, 100.0 + half % 7)
        for half in range(2 * first_s, 2 * last_s)
        for symbol in ("AAA", "BBB")
    ]
    seen = None if before is None else before.base_us
    windows = OpenWindows.empty() if before is None else before.open
    return step(table(ticks), windows, job.windows, seen, DELAY_S * US)


def watermark(folded: Step) -> int:
    """The watermark of the batch after ``folded``: every window ending by it is final."""
    assert folded.base_us is not None
    return folded.base_us - DELAY_S * US


def progress(job: FeatureJob, batch_id: int) -> Progress:
    recorded = job.sinks.progress_before(CP, batch_id + 1)
    assert recorded is not None
    return Progress(*recorded)


def cold_bars(root: Path) -> int:
    return len(duckdb.read_parquet(f"{root}/bars/*/*/*.parquet", hive_partitioning=True))


def test_an_export_is_written_in_the_background_and_recorded_once_it_is_there(
    job: FeatureJob, tmp_path: Path
) -> None:
    gate = threading.Event()
    job._exporter.submit(gate.wait)  # the export thread busy: the export waits behind it
    try:
        first = folded(job, None, 0, 40)
        job._write_features(first, None, CP, "features", 0)  # returns with the export queued
        export = job._export
        assert export is not None
        start, end = export.span
        assert end == watermark(first)  # every window final by the watermark
        assert progress(job, 0).exported_to_us == start  # not exported yet
        assert progress(job, 0).closed_to_us == end  # the indicators did not wait

        # A batch while it is written: no second export, the record stays where it was.
        second = folded(job, first, 40, 52)
        job._write_features(second, progress(job, 0), CP, "features", 1)
        assert job._export is export
        assert progress(job, 1).exported_to_us == start
        assert not (tmp_path / "cold" / "bars").exists()
    finally:
        gate.set()
    assert job._export is not None
    job._export.future.result(timeout=30)
    assert cold_bars(tmp_path / "cold") > 0
    assert progress(job, 0).exported_to_us == end  # its batch's record, written again

    # The batch after it lands goes on from its end, though the record it reads (batch 1's,
    # written while the export ran) still says where the export started: the windows final
    # since (16 s of them) are the next export's.
    third = folded(job, second, 52, 56)
    job._write_features(third, progress(job, 1), CP, "features", 2)
    assert progress(job, 2).exported_to_us == end
    assert job._export is not None
    assert job._export.span == (end, watermark(third))
    job._export.future.result(timeout=30)
    assert progress(job, 2).exported_to_us == job._export.span[1]


def test_a_failed_export_fails_the_batch_after_it(job: FeatureJob, tmp_path: Path) -> None:
    (tmp_path / "cold" / "bars").write_text("not a folder")  # the export cannot write there
    first = folded(job, None, 0, 40)
    job._write_features(first, None, CP, "features", 0)
    assert job._export is not None
    start = job._export.span[0]
    with pytest.raises(SinkError, match="parquet at"):
        job._export.future.result(timeout=30)
    with pytest.raises(SinkError, match="parquet at"):
        job._write_features(folded(job, first, 40, 45), progress(job, 0), CP, "features", 1)
    assert progress(job, 0).exported_to_us == start  # nothing claimed
