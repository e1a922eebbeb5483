"""Where each symbol's series stands in a topic, so a restarted source continues it.

A synthetic producer that restarts from seq 1 would have every tick routed to the DLQ as a
``duplicate`` until it passed its predecessor's numbers, and would jump back to its start
price. The topic itself says where each symbol stood: its newest ticks are near the end of
their partition. ``resume_points`` reads the tail of every partition, widening it until each
wanted symbol is found (or the partition's start is reached).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator

from confluent_kafka import Message

from marketpipe.contracts import ContractError, decode_tick
from marketpipe.ingest.synthetic import ResumePoint
from marketpipe.kafka.reader import read_tail
from marketpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Messages read per partition at first; doubled while symbols are missing.
FIRST_TAIL = 20_000
#: The most read per partition: beyond it, a symbol not seen starts afresh.
MAX_TAIL = 2_000_000

TailReader = Callable[[int], Iterator[Message]]


def newest_points(
    values: Iterable[bytes | None], source: str, wanted: Collection[str]
) -> dict[str, ResumePoint]:
    """The newest (highest seq) tick of each wanted symbol of ``source`` among ``values``;
    messages that are not ticks are skipped."""
    found: dict[str, ResumePoint] = {}
    for value in values:
        if not value:
            continue
        try:
            tick = decode_tick(value)
        except (ContractError, ValueError):
            continue
        if tick.source != source or tick.symbol not in wanted:
            continue
        point = found.get(tick.symbol)
        if point is None or tick.seq > point.seq:
            found[tick.symbol] = ResumePoint(tick.seq, tick.price, tick.event_time)
    return found


def resume_points(
    kafka: KafkaSettings, topic: str, source: str, wanted: Collection[str],
    reader: TailReader | None = None,
) -> dict[str, ResumePoint]:  # fmt: skip
    """Where each wanted symbol of ``source`` stands in ``topic`` (symbols never published
    are absent)."""
    read = reader or (lambda n: read_tail(kafka, topic, n))
    tail = FIRST_TAIL
    while True:
        found, read_all = _scan(read, tail, source, wanted)
        if len(found) == len(wanted) or read_all or tail >= MAX_TAIL:
            if len(found) < len(wanted) and not read_all:
                log.warning(
                    "%d symbols not found in the last %d messages of each partition of %s; "
                    "they start at seq 1", len(wanted) - len(found), tail, topic,
                )  # fmt: skip
            return found
        tail *= 2


def _scan(
    read: TailReader, tail: int, source: str, wanted: Collection[str]
) -> tuple[dict[str, ResumePoint], bool]:
    """The points found in the last ``tail`` messages per partition, and whether that was
    every partition's whole log (a partition that gave fewer than asked was read from its
    start)."""
    per_partition: Counter[int | None] = Counter()

    def values() -> Iterator[bytes | None]:
        for msg in read(tail):
            per_partition[msg.partition()] += 1
            yield msg.value()

    found = newest_points(values(), source, wanted)
    return found, all(n < tail for n in per_partition.values())
