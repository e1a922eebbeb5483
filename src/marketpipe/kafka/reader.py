"""Reading a topic from its start to the end it had when the read began."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from marketpipe.kafka.config import consumer_config
from marketpipe.kafka.topics import require_topic
from marketpipe.settings import KafkaSettings


def read_to_end(
    cfg: KafkaSettings,
    topic: str,
    since_ms: int | None = None,
    timeout_s: float = 30.0,
    partitions: list[int] | None = None,
    tail: int | None = None,
) -> Iterator[Message]:
    """Yield every committed message ``topic`` holds when called, in order within each partition.

    ``since_ms`` starts each partition at its first message with a timestamp at or after it
    (marketpipe stamps messages with their event time); ``tail`` reads only each partition's
    last ``tail`` messages. Uses a throwaway group with no commits,
    so it never disturbs services' offsets.
    """
    require_topic(cfg, topic)
    consumer = Consumer(
        consumer_config(
            cfg,
            f"marketpipe-inspect-{uuid.uuid4().hex[:12]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    try:
        meta = consumer.list_topics(topic=topic, timeout=timeout_s).topics[topic]
        starts: dict[int, int] = {}
        if since_ms is not None:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, pid, since_ms) for pid in meta.partitions],
                timeout=timeout_s,
            )
            starts = {tp.partition: tp.offset for tp in found}
        assignments, remaining = [], {}
        for pid in meta.partitions:
            if partitions is not None and pid not in partitions:
                continue
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, pid), timeout=timeout_s
            )
            start = starts.get(pid, low) if since_ms is not None else low
            if tail is not None:
                start = max(start, high - tail)
            if 0 <= start < high:
                assignments.append(TopicPartition(topic, pid, max(start, low)))
                remaining[pid] = high
        if not assignments:
            return
        consumer.assign(assignments)
        idle_deadline = _Deadline(timeout_s)
        while remaining:
            batch = consumer.consume(10_000, 0.5)
            if not batch:
                if idle_deadline.passed():
                    raise TimeoutError(
                        f"{topic}: no progress for {timeout_s:g}s, "
                        f"partitions left {sorted(remaining)}"
                    )
                continue
            idle_deadline.reset()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.pop(msg.partition(), None)
                        continue
                    raise KafkaException(err)
                pid, offset = msg.partition(), msg.offset()
                if pid not in remaining or offset is None:
                    continue
                yield msg
                if offset >= remaining[pid] - 1:
                    del remaining[pid]
    finally:
        consumer.close()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._clock = time.monotonic
        self._seconds = seconds
        self._end = self._clock() + seconds

    def reset(self) -> None:
        self._end = self._clock() + self._seconds

    def passed(self) -> bool:
        return self._clock() >= self._end


def read_tail(
    cfg: KafkaSettings, topic: str, per_partition: int, timeout_s: float = 30.0
) -> Iterator[Message]:
    """The last ``per_partition`` committed messages of every partition of ``topic`` (fewer
    where a partition holds fewer), in order within each partition."""
    return read_to_end(cfg, topic, timeout_s=timeout_s, tail=per_partition)
