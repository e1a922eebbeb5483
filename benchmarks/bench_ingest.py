"""Ingest throughput: plain confluent-kafka loop, synthetic producer, replay loader; one broker.

Starts its own local broker (pinned to the last CPU) and pins itself to CPU 0, so "one core"
means one core for the producing process. Runs the plain loop, the synthetic producer and the
replay loader (kibot CSV at --speed 0) alternately, ``--runs`` times each, and prints medians and
ratios: absolute figures move with the machine, the ratios much less.

    python benchmarks/bench_ingest.py [--runs 5] [--count 300000] [--smoke] [--running-services]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from harness import arguments, report, stack, unique
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.ingest.replay import Replayer
from marketpipe.kafka import Publisher, ensure_topics, producer_config
from marketpipe.kafka.topics import TopicSpec
from marketpipe.runtime import StopFlag
from marketpipe.settings import (
    KafkaSettings,
    ProducerSettings,
    ReplaySettings,
)


def fresh_topic(kafka: KafkaSettings) -> str:
    name = unique("bench")
    ensure_topics(kafka, [TopicSpec(name, 6, 1, {"retention.ms": "600000"})])
    return name


def prebuilt_messages(count: int) -> list[tuple[bytes, bytes]]:
    """Realistic payloads, encoded before the clock starts."""
    cfg = ProducerSettings(symbol_count=50, tps=0, seed=1)
    producer = SyntheticProducer(cfg, publisher=None, topic="")  # type: ignore[arg-type]
    times = np.arange(count, dtype=np.int64) + 1_700_000_000_000_000
    keys, values, _, _ = producer.encode(producer.market.generate(times))
    return list(zip(keys, values, strict=True))


def plain_loop(kafka: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> float:
    """The confluent-kafka example loop: produce, poll(0), retry on BufferError, flush."""
    topic = fresh_topic(kafka)
    conf = producer_config(kafka)
    conf.pop("logger", None)
    producer = Producer(conf)
    start = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("plain loop: messages left unacknowledged")
    return len(messages) / (time.perf_counter() - start)


def synthetic(kafka: KafkaSettings, count: int) -> float:
    topic = fresh_topic(kafka)
    cfg = ProducerSettings(symbol_count=50, tps=0, count=count, seed=2)
    start = time.perf_counter()
    summary = SyntheticProducer(cfg, Publisher(kafka), topic).run(StopFlag())
    elapsed = time.perf_counter() - start
    if not summary.delivery.ok or summary.delivery.delivered != count:
        raise RuntimeError(f"synthetic: delivery not clean: {summary.delivery}")
    return count / elapsed


def kibot_file(folder: Path, count: int) -> Path:
    """A kibot tick file of ``count`` rows, three ticks per second, a cent random walk."""
    rng = np.random.default_rng(4)
    steps = rng.choice([-0.01, 0.0, 0.01], count)
    prices = np.round(100 + np.cumsum(steps), 2)
    start = datetime(2024, 3, 8, 9, 30)
    path = folder / "BENCH.txt"
    with open(path, "w") as fh:
        for i in range(count):
            t = start + timedelta(seconds=i // 3)
            p = prices[i]
            fh.write(
                f"{t:%m/%d/%Y},{t:%H:%M:%S},{p:.2f},{p - 0.01:.2f},{p + 0.01:.2f},{i % 500 + 1}\n"
            )
    return path


def replay(kafka: KafkaSettings, path: Path, count: int) -> float:
    topic = fresh_topic(kafka)
    start = time.perf_counter()
    summary = Replayer(ReplaySettings(), Publisher(kafka), topic).run([path], StopFlag())
    elapsed = time.perf_counter() - start
    if not summary.ok or summary.delivery.delivered != count:
        raise RuntimeError(f"replay: not clean: {summary.lines()}")
    return count / elapsed


def generate_only(count: int) -> float:
    """Generation + encoding without a broker: the producer's own cost per tick."""
    cfg = ProducerSettings(symbol_count=50, tps=0, seed=3)
    producer = SyntheticProducer(cfg, publisher=None, topic="")  # type: ignore[arg-type]
    batch = cfg.batch_size
    start = time.perf_counter()
    for offset in range(0, count, batch):
        times = np.full(batch, 1_700_000_000_000_000 + offset, dtype=np.int64)
        producer.encode(producer.market.generate(times))
    return count / (time.perf_counter() - start)


def main() -> int:
    args = arguments(__doc__.split("\n", 1)[0])
    with stack(args, ["kafka"]) as bench:
        kafka = bench.kafka
        messages = prebuilt_messages(args.count)
        kibot = kibot_file(bench.folder, args.count)
        plain, ours, gen, rep = [], [], [], []
        for i in range(args.runs):
            plain.append(plain_loop(kafka, messages))
            ours.append(synthetic(kafka, args.count))
            gen.append(generate_only(args.count))
            rep.append(replay(kafka, kibot, args.count))
            print(
                f"run {i + 1}/{args.runs}: plain {plain[-1]:>9,.0f} msg/s  "
                f"synthetic {ours[-1]:>9,.0f}/s  generate+encode {gen[-1]:>9,.0f}/s  "
                f"replay {rep[-1]:>9,.0f} rows/s",
                flush=True,
            )
        med_plain, med_ours = statistics.median(plain), statistics.median(ours)
        ratios = [o / p for o, p in zip(ours, plain, strict=True)]
        rows = [
            ("plain confluent-kafka loop, prebuilt messages", f"{med_plain:>10,.0f} /s"),
            ("synthetic producer (generate+encode+publish)", f"{med_ours:>10,.0f} /s"),
            ("  of which generate+encode alone", f"{statistics.median(gen):>10,.0f} /s"),
            (
                "ratio synthetic / plain (median of run ratios)",
                f"{statistics.median(ratios):>12.2f}",
            ),
            ("target: synthetic producer", ">= 200,000 /s"),
            ("replay loader, kibot CSV, --speed 0", f"{statistics.median(rep):>10,.0f} /s"),
            (
                "ratio replay / synthetic (median of run ratios)",
                f"{statistics.median(r / o for r, o in zip(rep, ours, strict=True)):>12.2f}",
            ),
            ("target: replay loader", ">= 150,000 /s"),
        ]
        report(f"medians of {args.runs} runs, {args.count:,} messages each", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
