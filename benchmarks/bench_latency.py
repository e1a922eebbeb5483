"""End-to-end latency of the features job into PostgreSQL, live: the synthetic producer
publishes to ticks.valid at a steady rate while the job runs with a 1 s trigger; every row
written records ``written_at - last_event_time`` (the newest tick in the row, from its event
time to the moment its micro-batch is written). Prints p50/p99 per output after a warm-up.

    python benchmarks/bench_latency.py [--runs 3] [--tps 10000] [--seconds 60] [--warmup 20]
        [--spark-conf K=V] [--smoke] [--running-services]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    add_spark_conf,
    parse,
    parser,
    report,
    scratch_database,
    spark_conf,
    stack,
    unique,
)
from marketpipe.features.job import FeatureJob
from marketpipe.features.spark import spark_session
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.kafka import Publisher, ensure_topics, pipeline_topics
from marketpipe.runtime import StopFlag
from marketpipe.settings import FeaturesSettings, ProducerSettings
from marketpipe.sinks.hub import FeatureSinks
from marketpipe.sinks.migrations import migrate


def main() -> int:
    options = parser(__doc__.split("\n", 1)[0], runs=3, count=None)
    options.add_argument("--tps", type=float, default=10_000)
    options.add_argument("--seconds", type=float, default=60)
    options.add_argument(
        "--warmup", type=float, default=20, help="seconds of latency not counted at the start"
    )
    add_spark_conf(options)
    # Smoke: long enough for a few 1 s micro-batches to write rows after the warm-up.
    args = parse(options, tps=500, seconds=4, warmup=2)
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    with (
        stack(args, ["kafka", "postgres"], pin_self=False) as bench,
        scratch_database(bench.settings.postgres) as postgres,
    ):
        migrate(postgres.conninfo())
        spark = spark_session(FeaturesSettings(spark_conf=spark_conf(args)))
        for run in range(args.runs):
            kafka = bench.kafka.model_copy(update={"topic_valid": unique("latency")})
            ensure_topics(kafka, pipeline_topics(kafka)[1:2])
            with tempfile.TemporaryDirectory(dir=bench.folder) as folder:
                cfg = FeaturesSettings(
                    checkpoint_dir=str(Path(folder) / "cp"), sinks=["postgres"],  # type: ignore[list-item]
                    archive_root=str(Path(folder) / "archive"), trigger_s=1.0,
                )  # fmt: skip
                sinks = FeatureSinks(cfg, postgres)
                job = FeatureJob(spark, kafka, cfg, sinks)
                job.start()
                producer = SyntheticProducer(
                    ProducerSettings(symbol_count=50, tps=args.tps, duration_s=args.seconds,
                                     seed=run),
                    Publisher(kafka), kafka.topic_valid,
                )  # fmt: skip
                stop = StopFlag()
                thread = threading.Thread(target=producer.run, args=(stop,))
                thread.start()
                time.sleep(args.warmup)
                for samples in job.metrics.latency_s.values():
                    samples.clear()  # Spark's first micro-batches compile and warm up
                thread.join()
                time.sleep(3 * cfg.trigger_s)
                job.stop()
                sinks.close()
            for name, (p50, p99) in job.metrics.percentiles().items():
                p50s.setdefault(name, []).append(p50)
                p99s.setdefault(name, []).append(p99)
            print(
                f"run {run + 1}/{args.runs}: "
                + "  ".join(f"{n} p50 {p50s[n][-1]:.2f} s p99 {p99s[n][-1]:.2f} s" for n in p50s),
                flush=True,
            )
        spark.stop()
    rows = [
        (f"{name} p50 / p99", f"{statistics.median(p50s[name]):.2f} / "
         f"{statistics.median(p99s[name]):.2f} s")
        for name in sorted(p50s)
    ]  # fmt: skip
    rows.append(("target: p99 into PostgreSQL at 10k ticks/s", "<= 3 s"))
    report(
        f"medians of {args.runs} runs, {args.tps:,.0f} ticks/s for {args.seconds:.0f} s "
        f"(first {args.warmup:.0f} s not counted), 1 s trigger, PostgreSQL sink",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
