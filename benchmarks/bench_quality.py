"""Quality checker throughput versus a plain consume-and-produce loop, one broker, same run.

Preloads ticks.raw with synthetic ticks (0.1% of each fault), then alternately runs, on one
pinned core, a plain loop (consume a batch, produce every message to one output topic, commit
the batch in a transaction: no validation) and the quality checker in both delivery modes.
Each run reads the same input with a fresh consumer group and writes fresh output topics.
The stale-time rule is off so that later runs see the same verdicts as the first. A fourth
variant runs the exactly-once checker with its instruments live and its /metrics scraped every
second (Prometheus scrapes every 15-60 s: an upper bound), for the cost of being observed.

    python benchmarks/bench_quality.py [--runs 5] [--count 300000] [--smoke] [--running-services]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, TopicPartition

from harness import arguments, report, stack, unique
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher, consumer_config, ensure_topics, pipeline_topics
from marketpipe.kafka.transactions import TransactionalOutput
from marketpipe.local.process import free_port
from marketpipe.quality.service import QualityService
from marketpipe.runtime import StopFlag
from marketpipe.settings import (
    FaultSettings,
    KafkaSettings,
    OtelSettings,
    ProducerSettings,
    QualitySettings,
)
from marketpipe.telemetry import QualityInstruments, Telemetry, setup_telemetry

BATCH = 5000


def fresh_outputs(kafka: KafkaSettings, raw: str) -> KafkaSettings:
    suffix = uuid.uuid4().hex[:8]
    out = kafka.model_copy(
        update={
            "topic_raw": raw,
            "topic_valid": f"valid-{suffix}",
            "topic_dlq": f"dlq-{suffix}",
            "topic_quality_state": f"state-{suffix}",
        }
    )
    ensure_topics(out, pipeline_topics(out)[1:])
    return out


def plain_loop(kafka: KafkaSettings, count: int) -> float:
    out = fresh_outputs(kafka, kafka.topic_raw)
    group = f"plain-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(out, group, **{"enable.auto.commit": False}))
    output = TransactionalOutput(out, "exactly_once", group)
    output.start()
    consumer.subscribe([out.topic_raw])
    done, started = 0, None
    try:
        while done < count:
            msgs = consumer.consume(BATCH, 0.5)
            if not msgs:
                continue
            started = started or time.perf_counter()
            output.begin()
            offsets: dict[int, int] = {}
            for msg in msgs:
                output.producer.produce(out.topic_valid, msg.value(), msg.key())
                offsets[msg.partition()] = msg.offset() + 1
            output.commit(
                consumer, [TopicPartition(out.topic_raw, p, o) for p, o in offsets.items()]
            )
            done += len(msgs)
        return count / (time.perf_counter() - (started or 0.0))
    finally:
        output.close()
        consumer.close()


class Scraper(threading.Thread):
    """GETs a /metrics URL every ``every_s`` seconds, as Prometheus would, until stopped."""

    def __init__(self, url: str, every_s: float = 1.0) -> None:
        super().__init__(name="scraper", daemon=True)
        self.url, self.every_s, self.scrapes = url, every_s, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                response.read()
            self.scrapes += 1
            if self._halt.wait(self.every_s):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def checker(
    kafka: KafkaSettings, count: int, delivery: str, telemetry: Telemetry | None = None
) -> float:
    out = fresh_outputs(kafka, kafka.topic_raw)
    cfg = QualitySettings(
        group_id=f"bench-{uuid.uuid4().hex[:8]}", instance_id="bench", delivery=delivery,  # type: ignore[arg-type]
        batch_size=BATCH, stale_after_ms=0,
    )  # fmt: skip
    instruments = None if telemetry is None else QualityInstruments.create(telemetry.meter)
    service = QualityService(out, cfg, instruments)
    scraper = None
    if telemetry is not None and telemetry.endpoint:
        scraper = Scraper(telemetry.endpoint)
        scraper.start()
    stop = StopFlag()
    marks: dict[str, float] = {}
    process, account = service._process, service._account

    def timed_process(msgs: list[object]) -> None:
        marks.setdefault("start", time.perf_counter())
        process(msgs)  # type: ignore[arg-type]

    def timed_account(consumed: int, counts: object) -> None:
        account(consumed, counts)  # type: ignore[arg-type]
        if service.report.consumed >= count:
            marks["end"] = time.perf_counter()
            stop.set("done")

    service._process = timed_process  # type: ignore[method-assign,assignment]
    service._account = timed_account  # type: ignore[method-assign,assignment]
    report = service.run(stop)
    if scraper is not None:
        scraper.stop()
        if not scraper.scrapes:
            raise RuntimeError("the metrics endpoint was never scraped")
    if report.consumed != count or not report.balanced:
        raise RuntimeError(f"checker did not account for every message: {report.lines()}")
    return count / (marks["end"] - marks["start"])


def preload(kafka: KafkaSettings, count: int) -> None:
    faults = FaultSettings(malformed=0.001, crossed=0.001, duplicate=0.001, out_of_order=0.001)
    cfg = ProducerSettings(symbol_count=50, tps=0, count=count, seed=5, faults=faults)
    summary = SyntheticProducer(cfg, Publisher(kafka), kafka.topic_raw).run(StopFlag())
    if not summary.delivery.ok:
        raise RuntimeError("preload failed")


def main() -> int:
    args = arguments(__doc__.split("\n", 1)[0])
    with stack(args, ["kafka"]) as bench:
        kafka = bench.kafka.model_copy(update={"topic_raw": unique("bench-raw")})
        ensure_topics(kafka, pipeline_topics(kafka)[:1])
        preload(kafka, args.count)
        # The faults add messages: count what is really on the topic.
        consumer = Consumer(consumer_config(kafka, "count"))
        meta = consumer.list_topics(kafka.topic_raw, timeout=10).topics[kafka.topic_raw]
        messages = sum(
            consumer.get_watermark_offsets(TopicPartition(kafka.topic_raw, p), timeout=5)[1]
            for p in meta.partitions
        )
        consumer.close()
        telemetry = setup_telemetry(
            OtelSettings(metrics_port=free_port(), metrics_address="127.0.0.1"), "bench-quality"
        )
        plain, eos, alo, observed = [], [], [], []
        for i in range(args.runs):
            plain.append(plain_loop(kafka, messages))
            eos.append(checker(kafka, messages, "exactly_once"))
            alo.append(checker(kafka, messages, "at_least_once"))
            observed.append(checker(kafka, messages, "exactly_once", telemetry))
            print(
                f"run {i + 1}/{args.runs}: plain {plain[-1]:>9,.0f}/s  checker exactly-once "
                f"{eos[-1]:>9,.0f}/s  at-least-once {alo[-1]:>9,.0f}/s  exactly-once scraped "
                f"every 1 s {observed[-1]:>9,.0f}/s",
                flush=True,
            )
        telemetry.shutdown()
        ratio = statistics.median(e / p for e, p in zip(eos, plain, strict=True))
        # Paired by run: the machine's drift between runs cancels out.
        cost = 1 - statistics.median(o / e for o, e in zip(observed, eos, strict=True))
        rows = [
            ("plain consume+produce loop, transactional", f"{statistics.median(plain):>10,.0f} /s"),
            ("quality checker, exactly once", f"{statistics.median(eos):>10,.0f} /s"),
            ("quality checker, at least once", f"{statistics.median(alo):>10,.0f} /s"),
            ("ratio checker (exactly once) / plain", f"{ratio:>12.2f}"),
            (
                "quality checker, exactly once, /metrics scraped every 1 s",
                f"{statistics.median(observed):>10,.0f} /s",
            ),
            ("cost of metrics and scraping (1 - paired ratio)", f"{cost:>11.1%}"),
            ("target: quality checker", ">= 100,000 /s"),
            ("target: cost of being scraped", "< 1%"),
        ]
        report(f"medians of {args.runs} runs, {messages:,} messages each", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
