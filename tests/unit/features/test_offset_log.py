"""A micro-batch's ranges from its query's offset log (the files as Spark 4 writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, KafkaException

from marketpipe.features.offset_log import local_folder, logged_ranges

# The first two lines of an offsets file of the features query, as Spark 4.0 wrote it.
HEADER = 'v1\n{"batchWatermarkMs":0,"batchTimestampMs":1796689222881,"conf":{}}\n'


def log_offsets(
    checkpoint: Path, batch_id: int, offsets: dict[str, int], head: str = HEADER
) -> None:
    folder = checkpoint / "offsets"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(batch_id)).write_text(head + json.dumps(offsets))


def rows(table: pa.Table | None) -> list[tuple[int, int, int]]:
    assert table is not None
    return list(zip(*(table.column(c).to_pylist() for c in ("partition", "start", "end")),
                    strict=True))  # fmt: skip


def test_a_batch_runs_from_where_the_one_before_ended_to_its_logged_end(tmp_path: Path) -> None:
    log_offsets(tmp_path, 6, {"0": 100, "1": 200, "2": 300, "10": 5})
    # Partition 2 brought nothing; partition 3 is new since (read from its start).
    log_offsets(tmp_path, 7, {"0": 150, "1": 260, "2": 300, "10": 9, "3": 4})
    assert rows(logged_ranges(str(tmp_path), 7)) == [
        (0, 100, 150), (1, 200, 260), (3, 0, 4), (10, 5, 9)
    ]  # fmt: skip
    assert logged_ranges(f"file://{tmp_path}", 7) is not None
    assert logged_ranges(f"file:{tmp_path}", 7) is not None


def test_a_batch_with_no_new_records_has_no_ranges(tmp_path: Path) -> None:
    log_offsets(tmp_path, 1, {"0": 100})
    log_offsets(tmp_path, 2, {"0": 100})
    table = logged_ranges(str(tmp_path), 2)
    assert table is not None
    assert table.num_rows == 0


def test_batch_0_runs_from_the_source_s_initial_offsets(tmp_path: Path) -> None:
    log_offsets(tmp_path, 0, {"0": 40, "1": 7, "2": 3})
    initial = {"0": 10, "1": 0, "2": 3}  # partition 2 brought nothing
    assert rows(logged_ranges(str(tmp_path), 0, lambda: initial)) == [(0, 10, 40), (1, 0, 7)]


@pytest.mark.parametrize("error", [KafkaException(KafkaError(KafkaError._TRANSPORT)),
                                   RuntimeError("topic 'ticks.valid' not found")])  # fmt: skip
def test_batch_0_is_run_when_its_initial_offsets_cannot_be_had(
    tmp_path: Path, error: Exception
) -> None:
    def initial() -> dict[str, int]:
        raise error

    log_offsets(tmp_path, 0, {"0": 40})
    assert logged_ranges(str(tmp_path), 0, initial) is None


@pytest.mark.parametrize(
    "case",
    ["batch 0", "no log before", "other version", "two sources", "connector offsets",
     "not json", "not an offset"],
)  # fmt: skip
def test_where_the_log_cannot_say_the_batch_is_run(tmp_path: Path, case: str) -> None:
    """None (the caller runs the batch) rather than ranges guessed from a log it does not know."""
    batch = 1
    if case == "batch 0":  # it starts at the source's initial offsets, not logged or given
        log_offsets(tmp_path, 0, {"0": 10})
        batch = 0
    elif case != "no log before":
        log_offsets(tmp_path, 0, {"0": 10})
    if case == "other version":
        log_offsets(tmp_path, 1, {"0": 20}, HEADER.replace("v1", "v2"))
    elif case == "two sources":
        log_offsets(tmp_path, 1, {"0": 20}, HEADER + '{"0": 5}\n')
    elif case == "connector offsets":  # Spark's Kafka connector: {"topic": {"0": 20}}
        (tmp_path / "offsets" / "1").write_text(HEADER + '{"ticks.valid": {"0": 20}}')
    elif case == "not json":
        (tmp_path / "offsets" / "1").write_text(HEADER + "{")
    elif case == "not an offset":
        (tmp_path / "offsets" / "1").write_text(HEADER + '{"0": 20.5}')
    else:
        log_offsets(tmp_path, 1, {"0": 20})
    assert logged_ranges(str(tmp_path), batch) is None


def test_only_a_local_checkpoint_is_read() -> None:
    assert local_folder("/var/cp/features") == Path("/var/cp/features")
    assert local_folder("relative/cp") == Path("relative/cp")
    assert local_folder("file:///var/cp") == Path("/var/cp")
    assert local_folder("s3a://bucket/cp") is None
    assert logged_ranges("s3a://bucket/cp", 3) is None
