"""Features job throughput in local[2]: every query of ``marketpipe features`` over a preloaded
ticks.valid, from query start to the last query done, Spark start-up excluded.

Preloads the topic with synthetic ticks whose event times sit on a 10k ticks/s grid (50
symbols), then runs the job's queries with ``availableNow`` into a fresh DuckDB file and Parquet
archive, several times on one Spark session (fresh checkpoints each run). Also times a plain
bounded read of the same topic through the same source (count only) for the ratio, and reports
the features query's steady rate: its ticks over the time of its micro-batches after the first
(which compiles and warms up), with the archive query running beside it.

    python benchmarks/bench_features.py [--runs 3] [--count 300000] [--spark-conf K=V]
        [--smoke] [--running-services]
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from harness import add_spark_conf, parse, parser, report, spark_conf, stack, unique
from marketpipe.features.job import FeatureJob
from marketpipe.features.kafka_source import KafkaSource
from marketpipe.features.spark import spark_session
from marketpipe.ingest.pacing import Pacer, wall_clock_us
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher, ensure_topics, pipeline_topics
from marketpipe.runtime import StopFlag
from marketpipe.settings import FeaturesSettings, KafkaSettings, ProducerSettings
from marketpipe.sinks.hub import FeatureSinks

EVENT_RATE = 10_000  # ticks per second of event time


def preload(kafka: KafkaSettings, count: int) -> None:
    """``count`` ticks as fast as the broker takes them, event times on a 10k/s grid ending now."""
    # The backlog is the point here: the producer's "behind schedule" warning is not news.
    logging.getLogger("marketpipe.ingest.producer").setLevel(logging.ERROR)
    cfg = ProducerSettings(symbol_count=50, tps=EVENT_RATE, count=count, seed=7)
    producer = SyntheticProducer(cfg, Publisher(kafka), kafka.topic_valid)
    span_us = int(count / EVENT_RATE * 1e6) + 1_000_000
    producer.pacer = Pacer(EVENT_RATE, start_us=wall_clock_us() - span_us)
    if not producer.run(StopFlag()).delivery.ok:
        raise RuntimeError("preload failed")


def run_job(
    spark: SparkSession, kafka: KafkaSettings, folder: Path, read_from: str
) -> tuple[float, float]:
    """Seconds from start to the last query done, and the features query's steady rate: its
    ticks over its micro-batches' time after the first (which compiles and warms up)."""
    cfg = FeaturesSettings(
        checkpoint_dir=str(folder / "checkpoints"),
        duckdb_path=str(folder / "features.duckdb"),
        archive_root=str(folder / "archive"),
        max_offsets_per_trigger=100_000,
        read_from=read_from,  # type: ignore[arg-type]
    )
    sinks = FeatureSinks(cfg)
    job = FeatureJob(spark, kafka, cfg, sinks)
    started = time.perf_counter()
    job.start(available_now=True)
    job.await_all()
    elapsed = time.perf_counter() - started
    # Spark's rows may be offset ranges, or none (the driver took the ranges from the offset
    # log and Spark ran nothing): the ticks are what the job collected per batch.
    (features,) = (q for q in job.queries if q.name == "features")
    batches = [
        (p.durationMs["triggerExecution"] / 1000, job.metrics.ticks_of("features", p.batchId))
        for p in features.recentProgress if p.batchId > 0
    ]  # fmt: skip
    batches = [(seconds, ticks) for seconds, ticks in batches if ticks]
    busy_s = sum(seconds for seconds, _ in batches)
    # Reading the archive, the query may find every file at once: one batch, no steady rate.
    steady = sum(t or 0 for _, t in batches) / busy_s if busy_s else float("nan")
    failed = job.stop()
    sinks.close()
    if failed:
        raise RuntimeError(f"queries failed: {failed}")
    return elapsed, steady


def plain_read(spark: SparkSession, kafka: KafkaSettings) -> float:
    started = time.perf_counter()
    spark.dataSource.register(KafkaSource)
    n = (
        spark.read.format("marketpipe-kafka")
        .option("bootstrap.servers", kafka.bootstrap_servers)
        .option("topic", kafka.topic_valid)
        .load()
        .count()
    )
    return float(n) / (time.perf_counter() - started)


def main() -> int:
    options = parser(__doc__.split("\n", 1)[0])
    add_spark_conf(options)
    args = parse(options)
    with stack(args, ["kafka"], pin_self=False) as bench:
        kafka = bench.kafka.model_copy(update={"topic_valid": unique("bench-valid")})
        ensure_topics(kafka, pipeline_topics(kafka)[1:2])
        preload(kafka, args.count)
        spark = spark_session(FeaturesSettings(spark_conf=spark_conf(args)))
        job, steady, archive, reads = [], [], [], []
        for i in range(args.runs):
            reads.append(plain_read(spark, kafka))
            with tempfile.TemporaryDirectory(dir=bench.folder) as folder:
                elapsed, rate = run_job(spark, kafka, Path(folder), "topic")
                job.append(args.count / elapsed)
                steady.append(rate)
            with tempfile.TemporaryDirectory(dir=bench.folder) as folder:
                archive.append(args.count / run_job(spark, kafka, Path(folder), "archive")[0])
            print(
                f"run {i + 1}/{args.runs}: features job {job[-1]:>9,.0f} ticks/s (features "
                f"query steady {steady[-1]:>9,.0f}), reading the archive {archive[-1]:>9,.0f} "
                f"ticks/s, plain source read {reads[-1]:>9,.0f}",
                flush=True,
            )
        spark.stop()
        ratio = statistics.median(j / r for j, r in zip(job, reads, strict=True))
        rows = [
            ("plain bounded read through the source", f"{statistics.median(reads):>10,.0f} /s"),
            ("features job, all queries, local[2]", f"{statistics.median(job):>10,.0f} /s"),
            ("features query, steady (batches after the first)",
             f"{statistics.median(steady):>10,.0f} /s"),
            ("the same, features reading the archive", f"{statistics.median(archive):>10,.0f} /s"),
            ("ratio job / plain read", f"{ratio:>12.2f}"),
            ("target: features job", ">= 150,000 /s (issue 13: >= 100,000)"),
        ]  # fmt: skip
        report(f"medians of {args.runs} runs, {args.count:,} ticks each", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
