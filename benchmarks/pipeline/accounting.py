"""Every raw tick accounted for: in the valid topic or the DLQ exactly once, never twice valid.

A record is known by its identity: ``(symbol, source, seq)`` for a tick that decodes, else the
sha256 of its whole value (what a truncated DLQ copy carries in a header). Counts are
multisets, so a tick the producer sent twice on purpose must come out twice (once valid, once
as a duplicate in the DLQ).

What the *broker* lost is told apart from what *marketpipe* lost with an observer: a consumer
that tails the three topics all along and remembers every identity it ever saw committed. A
record that was visible once and is gone afterwards was lost by the broker (the local broker
drops the last acknowledged messages when it restarts); a record that never reached an output
was lost by marketpipe.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from marketpipe.contracts import ContractError, decode_tick
from marketpipe.kafka import consumer_config, read_to_end
from marketpipe.kafka.deadletter import H_SHA256
from marketpipe.settings import KafkaSettings
from marketpipe.topicstats import Headers

Identity = tuple[str, ...]
EXAMPLES = 5


def identity(value: bytes | None, headers: Headers = None) -> Identity:
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, raw in pairs:
        if name == H_SHA256 and raw:  # a DLQ copy cut to fit
            return ("bytes", raw.decode() if isinstance(raw, bytes) else raw)
    try:
        tick = decode_tick(value or b"")
    except ContractError:
        return ("bytes", hashlib.sha256(value or b"").hexdigest())
    return ("tick", tick.symbol, tick.source, str(tick.seq))


def identities(messages: Iterable[Message]) -> Counter[Identity]:
    return Counter(identity(m.value(), m.headers()) for m in messages)


@dataclass
class Ledger:
    """What each topic holds at the end, what the observer saw on the way, what was acked."""

    raw: Counter[Identity] = field(default_factory=Counter)
    valid: Counter[Identity] = field(default_factory=Counter)
    dlq: Counter[Identity] = field(default_factory=Counter)
    #: Copies the observer saw committed (distinct topic positions), in raw and in outputs.
    seen_raw: Counter[Identity] = field(default_factory=Counter)
    seen_out: Counter[Identity] = field(default_factory=Counter)
    #: The valid topic read uncommitted too: records an open (hanging) transaction holds back.
    valid_uncommitted: Counter[Identity] = field(default_factory=Counter)
    #: Messages the producers said the broker acknowledged (None: a run died before saying).
    acknowledged: int | None = None
    #: An observer tailed the topics (without one, nothing can be said "seen then gone").
    observed: bool = False


@dataclass(frozen=True)
class Accounting:
    raw: int
    #: Distinct ticks in raw: a producer that resends after a rebuild can write one twice.
    raw_distinct: int
    valid: int
    dlq: int
    acknowledged: int | None
    #: Ticks seen committed in the raw topic that it no longer holds.
    broker_lost_raw: int
    #: Outputs seen committed that their topic no longer holds (their raw tick is still there).
    broker_lost_out: list[Identity]
    #: Raw ticks with no output, never seen in one either: lost by marketpipe.
    lost: list[Identity]
    #: Of ``lost``: in the valid topic's log, but not committed (a transaction never ended).
    uncommitted: int
    #: More than one copy in the valid topic.
    duplicated: list[Identity]
    #: More outputs than raw copies (e.g. valid and DLQ for one raw tick): processed twice.
    reprocessed: list[Identity]
    #: Outputs whose raw tick the broker lost after the checker had read it.
    raw_lost_after_processing: int
    #: The topics were tailed all along (``broker_lost_raw``/``_out`` mean something).
    observed: bool

    @property
    def broker_lost_acknowledged(self) -> int | None:
        """Acknowledged ticks the raw topic does not hold (None: acks unknown). Producers
        count each tick once however often they send it, so this compares distinct ticks."""
        return None if self.acknowledged is None else self.acknowledged - self.raw_distinct

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reprocessed)

    def lines(self) -> list[str]:
        acked = "unknown (a producer run died without a summary)"
        if self.acknowledged is not None:
            acked = f"{self.acknowledged:,}"
        by_acks = self.broker_lost_acknowledged
        seen = (
            f"{self.broker_lost_raw:,} raw seen then gone "
            f"({self.raw_lost_after_processing:,} of them already processed), "
            f"{len(self.broker_lost_out):,} outputs seen then gone"
            if self.observed
            else f"{self.raw_lost_after_processing:,} outputs without their raw tick "
            "(topics not tailed: what a broker lost would count as marketpipe's loss)"
        )
        out = [
            f"raw {self.raw:,} ({self.raw_distinct:,} distinct) = valid {self.valid:,} + "
            f"dlq {self.dlq:,} expected; producer acknowledged {acked}",
            "broker lost: "
            + (f"{by_acks:,} acknowledged ticks not in raw, " if by_acks is not None else "")
            + seen,
            f"marketpipe lost {len(self.lost):,} ({self.uncommitted:,} of them written to the "
            "valid topic in a transaction that never committed nor aborted), "
            f"duplicated in valid {len(self.duplicated):,}, processed twice "
            f"{len(self.reprocessed):,}",
        ]
        for name, ids in (("lost", self.lost), ("duplicated", self.duplicated),
                          ("processed twice", self.reprocessed)):  # fmt: skip
            out += [f"  {name}: {i}" for i in ids[:EXAMPLES]]
        return out


def account(ledger: Ledger) -> Accounting:
    raw, valid, dlq = ledger.raw, ledger.valid, ledger.dlq
    outputs = valid + dlq
    lost: list[Identity] = []
    gone_out: list[Identity] = []
    reprocessed: list[Identity] = []
    for ident, n in raw.items():
        got = outputs[ident]
        if got < n:
            (gone_out if ledger.seen_out[ident] >= n else lost).append(ident)
        elif got > n:
            reprocessed.append(ident)
    only_out = [i for i in outputs if i not in raw]
    return Accounting(
        raw=sum(raw.values()),
        raw_distinct=len(raw),
        valid=sum(valid.values()),
        dlq=sum(dlq.values()),
        acknowledged=ledger.acknowledged,
        broker_lost_raw=sum((ledger.seen_raw - raw).values()),
        broker_lost_out=sorted(gone_out),
        lost=sorted(lost),
        uncommitted=sum(1 for i in lost if ledger.valid_uncommitted[i] > valid[i]),
        duplicated=sorted(i for i, n in valid.items() if n > 1),
        reprocessed=sorted(reprocessed),
        raw_lost_after_processing=len(only_out),
        observed=ledger.observed,
    )


class Observer:
    """Tails topics from their start in a thread; remembers every record seen committed, by
    position and identity (a position the broker reused after losing its record counts
    again with the new record)."""

    def __init__(self, kafka: KafkaSettings, topics: dict[str, str]) -> None:
        self.kafka = kafka
        self.topics = topics  # role -> topic name
        self._seen: set[tuple[str, int, int, Identity]] = set()
        self._roles = {name: role for role, name in topics.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def start(self) -> Observer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        conf = consumer_config(
            self.kafka, f"marketpipe-observer-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "reconnect.backoff.max.ms": 1000, "log_level": 0},
        )  # fmt: skip
        consumer = Consumer(conf)
        try:
            consumer.assign([
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in self.topics.values() for p in range(self.kafka.partitions)
            ])  # fmt: skip
            while not self._stop.is_set():
                for msg in consumer.consume(5_000, 0.5):
                    role = self._roles.get(msg.topic() or "")
                    if msg.error() is None and role is not None:
                        ident = identity(msg.value(), msg.headers())
                        self._seen.add((role, msg.partition() or 0, msg.offset() or 0, ident))
        finally:
            consumer.close()

    def seen(self, *roles: str) -> Counter[Identity]:
        """Copies of each identity seen in the topics of ``roles``."""
        return Counter(ident for role, _, _, ident in list(self._seen) if role in roles)


def final_ledger(kafka: KafkaSettings, observer: Observer | None = None) -> Ledger:
    """What the topics hold now (committed records only), with what ``observer`` saw."""
    ledger = Ledger(
        raw=identities(read_to_end(kafka, kafka.topic_raw, timeout_s=60)),
        valid=identities(read_to_end(kafka, kafka.topic_valid, timeout_s=60)),
        dlq=identities(read_to_end(kafka, kafka.topic_dlq, timeout_s=60)),
    )
    dirty = kafka.model_copy(
        update={"extra_config": {**kafka.extra_config, "isolation.level": "read_uncommitted"}}
    )
    ledger.valid_uncommitted = identities(read_to_end(dirty, kafka.topic_valid, timeout_s=60))
    if observer is not None:
        ledger.observed = True
        ledger.seen_raw = observer.seen("raw")
        ledger.seen_out = observer.seen("valid", "dlq")
    return ledger
