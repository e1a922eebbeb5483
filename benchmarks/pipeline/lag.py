"""How far behind each stage is, sampled from outside the way an operator would look.

- checker: end offsets of the raw topic minus the group's committed offsets;
- features job: end offsets of the valid topic minus the offsets of the newest micro-batch
  committed in each query's Spark checkpoint (``offsets/<n>`` once ``commits/<n>`` exists).

A sample taken while the broker is down says so (``None``) rather than guessing.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from marketpipe.kafka import consumer_config
from marketpipe.settings import KafkaSettings

#: One stage: (sum of its positions, sum of per-partition lag, sum of its input's end offsets).
Progress = tuple[int, int, int]


@dataclass(frozen=True)
class LagSample:
    t: float  # time.monotonic()
    raw_end: int | None  # sum of the raw topic's end offsets (None: broker not answering)
    stages: dict[str, Progress | None] = field(default_factory=dict)

    def lag(self, stage: str) -> int | None:
        got = self.stages.get(stage)
        return None if got is None else got[1]


def checkpoint_offsets(checkpoint: Path) -> dict[int, int] | None:
    """Per partition, the next offset after the newest committed micro-batch (None: none yet).

    An offsets file is ``v1``, the batch metadata, then one line per source: our Kafka source
    writes ``{"<partition>": next offset}``."""
    commits = checkpoint / "commits"
    if not commits.is_dir():
        return None
    done = [int(p.name) for p in commits.iterdir() if p.name.isdigit()]
    if not done:
        return None
    lines = (checkpoint / "offsets" / str(max(done))).read_text().splitlines()
    return {int(p): int(o) for p, o in json.loads(lines[2]).items()}


class LagProbe:
    """One plain consumer (no group membership) that reads end and committed offsets."""

    def __init__(self, kafka: KafkaSettings, checker_group: str, timeout_s: float = 2.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.partitions = kafka.partitions
        # Never polled, so librdkafka's logs would pile up and pour out at close: none.
        quiet = {"enable.auto.commit": False, "log_level": 0}
        # Sharing the checker's group id only to read its commits: never subscribes or commits.
        self._group = Consumer(consumer_config(kafka, checker_group, **quiet))
        self._plain = Consumer(
            consumer_config(kafka, f"marketpipe-lag-{uuid.uuid4().hex[:8]}", **quiet)
        )

    def close(self) -> None:
        self._group.close()
        self._plain.close()

    def ends(self, topic: str) -> dict[int, int]:
        return {
            p: self._plain.get_watermark_offsets(
                TopicPartition(topic, p), timeout=self.timeout_s, cached=False
            )[1]
            for p in range(self.partitions)
        }

    def committed(self, topic: str) -> dict[int, int]:
        got = self._group.committed(
            [TopicPartition(topic, p) for p in range(self.partitions)], timeout=self.timeout_s
        )
        return {tp.partition: max(0, tp.offset) for tp in got}

    def sample(self, checkpoints: dict[str, Path]) -> LagSample:
        """Checker and features lag now; ``checkpoints`` names each Spark query's folder."""
        now = time.monotonic()
        try:
            raw_end = self.ends(self.kafka.topic_raw)
            valid_end = self.ends(self.kafka.topic_valid)
            committed = self.committed(self.kafka.topic_raw)
        except KafkaException:
            return LagSample(now, None)
        stages: dict[str, Progress | None] = {"checker": progress(raw_end, committed)}
        for name, folder in checkpoints.items():
            try:
                offsets = checkpoint_offsets(folder)
            except (OSError, ValueError, IndexError):  # a batch being written right now
                offsets = None
            stages[name] = progress(valid_end, offsets or {})
        return LagSample(now, sum(raw_end.values()), stages)


def progress(ends: dict[int, int], positions: dict[int, int]) -> Progress:
    """(positions, lag, ends): a position past the end (the broker lost the tail) is no lag."""
    return (
        sum(positions.values()),
        sum(max(0, end - positions.get(p, 0)) for p, end in ends.items()),
        sum(ends.values()),
    )


def caught_up_after(samples: list[LagSample], stage: str, since: float) -> float | None:
    """Seconds from ``since`` until ``stage`` had worked off the backlog it faced then: its
    position reached its input's end offsets of the first sample at or after ``since``.
    Downstream stages pass the time their upstream caught up. None if it never did."""
    later = [s for s in samples if s.t >= since and s.stages.get(stage) is not None]
    if not later:
        return None
    first = later[0].stages[stage]
    assert first is not None
    for s in later:
        got = s.stages[stage]
        assert got is not None
        if got[0] >= first[2] or got[1] == 0:
            return s.t - since
    return None


def producing_again_after(samples: list[LagSample], since: float) -> float | None:
    """Seconds from ``since`` until the raw topic grew again (new acknowledged ticks)."""
    later = [s for s in samples if s.t >= since and s.raw_end is not None]
    for s in later[1:]:
        if s.raw_end is not None and later[0].raw_end is not None and s.raw_end > later[0].raw_end:
            return s.t - since
    return None
