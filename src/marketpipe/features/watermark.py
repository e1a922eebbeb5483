"""The features query's event-time watermark, kept per partition of its input.

Spark's rule, the newest event time seen minus the delay, suits an input that advances in
event time as a whole. ticks.valid does not: the quality checker writes its partitions at
their own pace, and a burst (the history ``make demo`` or a replay publishes, a backlog the
checker drains after a restart) reaches them minutes of event time apart. One micro-batch
boundary inside such a burst set the watermark by the partition furthest ahead, and the
others' ticks were dropped as late: ``make demo`` lost 3,164 of 13,870 bars that way
(docs/operations.md). So the watermark follows the slowest partition, as Flink's
per-partition watermarks do: its base is the least newest event time among the partitions
that are not idle.

A partition that has brought ticks is idle once the others have brought ticks for ``idle_s``
(wall clock) without it: its quiet time grows only across micro-batches that bring ticks no
more than ``idle_s`` apart. So a symbol that stops trading holds its partition's watermark
for ``idle_s``, then no more; but when the whole input pauses (the broker restarting, the
market closed) no partition goes idle, and the burst after the pause (the checker draining
its backlog into the partitions unevenly) is waited for. A partition that has brought
nothing is idle ``idle_s`` after the job's first micro-batch with ticks; until then it holds
the watermark where it is (the first burst may reach it last). So a topic with more
partitions than symbols waits ``idle_s`` once, at the start.

The base never goes back, and the job records it with each micro-batch's progress
(``progress.Progress.base_us``); the partitions' clocks live in memory only. So a replayed
micro-batch drops what the batch before it said, as it did the first time, and records at
least what its first attempt did (``progress.next_base``); after a restart every partition is
waited for again, as at the first start. Read from the archive's files, whose ticks carry no
partition, the input is one partition (``WHOLE_INPUT``): Spark's rule. Pure, no I/O: the
caller passes the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

#: The input's one "partition" when its ticks carry none (read from the archive's files).
WHOLE_INPUT = -1


@dataclass
class _Partition:
    newest_us: int | None  # None: no tick yet
    since_s: float  # wall clock of the first batch with ticks (for one without any)
    quiet_s: float = 0.0  # the others' ticking time since its last tick


class PartitionClocks:
    """Per partition of one query's input, its newest event time and how long it has been
    quiet; ``base`` says what the next micro-batch's watermark trails."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._partitions: dict[int, _Partition] = {}
        self._last_s: float | None = None  # the last batch with ticks

    @property
    def known(self) -> frozenset[int]:
        return frozenset(self._partitions)

    def expect(self, partitions: Iterable[int], now_s: float) -> None:
        """The input's partitions (its topic's), told at the first batch with ticks: those
        not seen yet hold the watermark until they bring ticks or go idle."""
        for p in partitions:
            self._partitions.setdefault(p, _Partition(None, now_s))

    def observe(self, newest: Mapping[int, int], now_s: float) -> None:
        """A micro-batch at wall clock ``now_s`` brought ticks up to ``newest`` (event time)
        per partition; partitions without ticks in it are left out."""
        if not newest:
            return
        gap = 0.0 if self._last_s is None else now_s - self._last_s
        self._last_s = now_s
        if gap < self.idle_s:  # a longer one: the whole input paused, nobody was quiet alone
            for p, partition in self._partitions.items():
                if p not in newest:
                    partition.quiet_s += gap
        for p, newest_us in newest.items():
            known = self._partitions.get(p)
            if known is None or known.newest_us is None:
                self._partitions[p] = _Partition(newest_us, now_s)
            else:
                known.newest_us = max(known.newest_us, newest_us)
                known.quiet_s = 0.0

    def base(self, now_s: float) -> int | None:
        """The least newest event time among the partitions not idle at ``now_s``; None while
        one of them has brought no tick yet, or before any tick."""
        active = [p.newest_us for p in self._partitions.values() if not self._idle(p, now_s)]
        if not active or None in active:
            return None
        return min(t for t in active if t is not None)

    def _idle(self, partition: _Partition, now_s: float) -> bool:
        if partition.newest_us is None:
            return now_s - partition.since_s >= self.idle_s
        return partition.quiet_s >= self.idle_s


def newest_per_partition(ticks: pa.Table) -> dict[int, int]:
    """The newest ``event_time`` per ``partition`` of ``ticks`` (``WHOLE_INPUT`` when they
    carry no partition)."""
    if not ticks.num_rows:
        return {}
    if "partition" not in ticks.column_names:
        return {WHOLE_INPUT: int(pc.max(ticks.column("event_time")).as_py())}
    found = ticks.group_by("partition").aggregate([("event_time", "max")])
    return dict(
        zip(found.column("partition").to_pylist(), found.column("event_time_max").to_pylist(),
            strict=True)
    )  # fmt: skip
