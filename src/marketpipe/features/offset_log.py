"""A micro-batch's offset ranges read from its query's checkpoint, instead of running it.

With ``decode=ranges`` a micro-batch of the Python source is only its offset ranges, and the
driver reads the ticks itself (``ranges.RangeReader``). Getting those few numbers out of the
batch's DataFrame (``toArrow``) is a Spark job: a task, a Python worker call, the rows back to
the driver. At a 0.5 s trigger that was ~0.14 s of every batch, on the path of every tick's
latency (docs/benchmarks.md). Spark has written them already: before it runs batch ``N`` it
logs the batch's end offsets to ``<checkpoint>/offsets/N`` (its write-ahead log), and the
batch starts where batch ``N - 1`` ended. Replaying a batch after a restart, Spark reads its
ranges from the same two files, so they are the ranges the batch holds.

The offset log is Spark's format (``OffsetSeqLog``, version ``v1``: the version, the batch's
metadata, then one line per source with its offsets as the source wrote them, here the Python
source's ``{"<partition>": offset}``). Where it cannot say, ``logged_ranges`` returns None and
the caller runs the batch: a checkpoint not on a local file system (``s3a://``), a file
missing or in another format.

Batch 0 starts at the source's initial offsets, which Spark does not log: it asks the source
(``initialOffset``) whenever it runs batch 0, a replay included. The caller gives them the same
way (``initial``, the source's ``initial_offsets``); without them, batch 0 is run. Running it
was ~0.1-0.4 s at every start of the job, and ~1 s more when it is the first Spark task of the
process: the only one that starts a Python worker (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from marketpipe.features.kafka_source import offset_ranges, ranges_table

log = logging.getLogger(__name__)

#: The offset log's format version Spark 3 and 4 write (``OffsetSeqLog.VERSION``).
VERSION = "v1"


def local_folder(checkpoint: str) -> Path | None:
    """The folder of a checkpoint location on the local file system (a path or ``file:``
    URI), or None for any other file system."""
    if checkpoint.startswith("file:"):
        return Path(checkpoint.removeprefix("file:").removeprefix("//"))
    return None if "://" in checkpoint else Path(checkpoint)


def logged_offsets(folder: Path, batch_id: int) -> dict[str, int] | None:
    """The end offsets of micro-batch ``batch_id`` of a query with one source, from the
    offset log in ``folder`` (the query's checkpoint), or None if the log does not hold them
    in the form this module knows."""
    try:
        lines = (folder / "offsets" / str(batch_id)).read_text().splitlines()
    except OSError:
        return None
    if len(lines) != 3 or lines[0] != VERSION:
        return None
    try:
        offsets = json.loads(lines[2])
    except ValueError:
        return None
    if not isinstance(offsets, dict) or not all(
        isinstance(p, str) and p.isdigit() and type(o) is int for p, o in offsets.items()
    ):
        return None
    return offsets


def logged_ranges(
    checkpoint: str, batch_id: int, initial: Callable[[], dict[str, int]] | None = None
) -> pa.Table | None:
    """Micro-batch ``batch_id``'s ranges as the Python source gives them with
    ``decode=ranges`` (``partition, start, end``), from the offset log of the query
    checkpointed at ``checkpoint``; None where the log cannot say (see the module). Batch 0
    starts at ``initial()``, the source's initial offsets (None without them, or if asking for
    them fails: the batch is run, and Spark asks the source)."""
    folder = local_folder(checkpoint)
    if folder is None or batch_id < 0:
        return None
    end = logged_offsets(folder, batch_id)
    start = None if end is None else _start(folder, batch_id, initial)
    if end is None or start is None:
        log.debug("offsets of batch %d not in %s's log: the batch is run", batch_id, checkpoint)
        return None
    return ranges_table(offset_ranges(start, end))


def _start(
    folder: Path, batch_id: int, initial: Callable[[], dict[str, int]] | None
) -> dict[str, int] | None:
    if batch_id > 0:
        return logged_offsets(folder, batch_id - 1)
    if initial is None:
        return None
    from confluent_kafka import KafkaException

    try:
        return initial()
    except (KafkaException, RuntimeError) as exc:  # no broker, no topic: Spark's run waits
        log.debug("initial offsets of %s not known (%s): batch 0 is run", folder, exc)
        return None
