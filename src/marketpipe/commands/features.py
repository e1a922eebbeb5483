"""``features``, ``backfill``, ``validate``: the Spark features job and its checks."""

from __future__ import annotations

import argparse
import logging
import sys

from marketpipe.commands.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from marketpipe.output import emit, wants_json
from marketpipe.runner import finish
from marketpipe.settings import ConfigError, Settings

log = logging.getLogger("marketpipe")


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.job import FeatureJob
    from marketpipe.features.jvm import stop_session
    from marketpipe.features.spark import quiet_spark_logs, spark_session
    from marketpipe.runner import service
    from marketpipe.runtime import freeze_startup_objects
    from marketpipe.sinks.hub import FeatureSinks
    from marketpipe.telemetry import FeatureInstruments

    with service(settings, "features", [settings.kafka.topic_valid]) as ctx:
        spark = spark_session(settings.features, write_archive=True)
        if settings.log_level != "DEBUG":
            quiet_spark_logs(spark)
        sinks = FeatureSinks(settings.features, settings.postgres, settings.s3)
        try:
            job = FeatureJob(spark, settings.kafka, settings.features, sinks, ctx.readiness,
                             FeatureInstruments.create(ctx.telemetry.meter),
                             settings.s3)  # fmt: skip
            queries = job.start(available_now=args.available_now)
            log.debug("features: %d start-up objects frozen", freeze_startup_objects())
            log.info("features: %d streaming queries over %s", len(queries),
                     settings.kafka.topic_valid)  # fmt: skip
            # Until stopped, every query done (--available-now), or one failed: the others
            # would run on without it, so the job stops and exits non-zero (a pod restarts).
            # A query retrying through a sink outage is neither: the loop (and so the
            # heartbeat) turns on while it waits.
            while not ctx.stop.is_set() and any(q.isActive for q in queries):
                if any(q.exception() is not None for q in queries):
                    break
                ctx.stop.wait(1.0)
            failed = job.stop()
            # Read from the JVM while it runs: one line a person can act on per failed query;
            # Spark's exception (with the query's whole plan) is for DEBUG.
            outcomes = {q.name: job.failure(q) for q in queries}
            for q in queries:
                if outcomes[q.name] is not None:
                    log.debug("query %s: %s", q.name, q.exception())
        finally:
            sinks.close()
            stop_session(spark, settings.features)
    lines = job.metrics.lines()
    lines += [f"{name}: stopped" for name, why in outcomes.items() if why is None]
    failures = [why for why in outcomes.values() if why is not None]
    summary = {**job.metrics.as_dict(),
               "queries": {name: why or "stopped" for name, why in outcomes.items()}}  # fmt: skip
    return finish(
        "features", lines, EXIT_FAILED if failed else EXIT_OK, "; ".join(failures) or None,
        summary, wants_json(args),
    )  # fmt: skip


def _range(args: argparse.Namespace) -> tuple[int, int]:
    if args.end <= args.start:
        raise ConfigError("--end must be after --start")
    return args.start, args.end


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.backfill import run_backfill
    from marketpipe.features.jvm import stop_session
    from marketpipe.features.spark import spark_session
    from marketpipe.sinks.hub import FeatureSinks

    start, end = _range(args)
    if args.source == "topic":
        from marketpipe.kafka import require_topic, wait_for_broker

        wait_for_broker(settings.kafka)
        require_topic(settings.kafka, settings.kafka.topic_valid)
    elif not settings.features.archive_root:
        print("marketpipe backfill: no archive (MARKETPIPE_FEATURES__ARCHIVE_ROOT is empty); "
              "use --source topic", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    spark = spark_session(settings.features, "marketpipe-backfill", write_archive=True)
    sinks = FeatureSinks(settings.features, settings.postgres, settings.s3)
    try:
        report = run_backfill(spark, settings, sinks, start, end, args.source)
    finally:
        sinks.close()
        stop_session(spark, settings.features)
    for line in report.lines():
        print(line)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.validate import validate

    start, end = _range(args)
    report = validate(settings, start, end, args.sink)
    if wants_json(args):
        emit(report.as_dict())
    else:
        for line in report.lines():
            print(line)
    if not report.ticks:
        print("marketpipe validate: no archived ticks in that range", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED
