"""``marketpipe``: one command, a subcommand per service. Entry points stay thin: they load
settings, set up logging and telemetry, wire components and translate failures to exit codes.

Exit codes: 0 success; 1 the run finished but lost or failed records; 2 bad usage or settings;
3 a dependency (broker, database, object store, local service) is unavailable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from marketpipe.settings import ConfigError, Settings, env_name, load_settings, with_overrides

if TYPE_CHECKING:
    from marketpipe.kafka import Publisher
    from marketpipe.runtime import StopFlag

log = logging.getLogger("marketpipe")
_SummaryT = TypeVar("_SummaryT")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3
# Commands that run as services and beat MARKETPIPE_HEALTH_FILE (the liveness probe's).
LONG_RUNNING = frozenset({"produce", "replay", "live", "quality", "features"})

Handler = Callable[[argparse.Namespace, Settings], int]

# CLI option -> producer field; values arrive as strings and are validated by the settings model.
PRODUCE_OPTIONS = {
    "symbols": "--symbols",
    "symbol_count": "--symbol-count",
    "tps": "--tps",
    "jitter_ms": "--jitter-ms",
    "duration_s": "--duration",
    "count": "--count",
    "history_s": "--history",
    "history_tps": "--history-tps",
    "seed": "--seed",
    "start_price": "--start-price",
    "drift": "--drift",
    "volatility": "--volatility",
    "tick_size": "--tick-size",
    "spread_bps": "--spread-bps",
    "source": "--source",
}
DASHBOARD_OPTIONS = {
    "address": "--address",
    "port": "--port",
    "sink": "--sink",
    "refresh_s": "--refresh",
    "prometheus_url": "--prometheus-url",
}
FAULT_OPTIONS = {
    "malformed": "--malformed",
    "crossed": "--crossed",
    "duplicate": "--duplicate",
    "out_of_order": "--out-of-order",
}


REPLAY_OPTIONS = {
    "format": "--format",
    "preset": "--preset",
    "columns": "--columns",
    "delimiter": "--delimiter",
    "time_unit": "--time-unit",
    "time_format": "--time-format",
    "tz": "--tz",
    "price_scale": "--price-scale",
    "symbol": "--symbol",
    "only_symbols": "--only-symbols",
    "speed": "--speed",
    "start_at": "--start-at",
    "source": "--source",
}


LIVE_OPTIONS = {
    "symbols": "--symbols",
    "base_url": "--base-url",
    "poll_interval_s": "--interval",
    "duration_s": "--duration",
    "source": "--source",
}


def _add_options(
    parser: argparse.ArgumentParser, options: dict[str, str], helps: dict[str, str]
) -> None:
    for field, flag in options.items():
        parser.add_argument(flag, dest=field, metavar="X", help=helps.get(field))


def _publish(
    settings: Settings,
    topic: str,
    service: str,
    source: str,
    run: Callable[[Publisher, StopFlag], _SummaryT],
) -> _SummaryT:
    """What every source command shares: telemetry, a reachable broker and topic, a counting
    publisher, and a clean stop on SIGINT/SIGTERM."""
    from marketpipe.kafka import Publisher, require_topic, wait_for_broker
    from marketpipe.runtime import Readiness, stop_on_signals
    from marketpipe.telemetry import ProducerInstruments, setup_telemetry

    telemetry = setup_telemetry(settings.otel, service)
    try:
        wait_for_broker(settings.kafka)
        require_topic(settings.kafka, topic)
        with stop_on_signals(stop_flag(settings)) as stop:
            readiness = Readiness(settings.health_file)
            telemetry.watch(stop, readiness)
            publisher = Publisher(
                settings.kafka,
                ProducerInstruments.create(telemetry.meter),
                {"source": source, "topic": topic},
                stopping=stop.is_set,
                give_up=lambda reason: stop.set("give-up"),
                readiness=readiness,
            )
            summary = run(publisher, stop)
        if publisher.report.gave_up:
            print(
                f"marketpipe {service}: gave up: {publisher.report.gave_up} (is the broker up? "
                "MARKETPIPE_KAFKA__GIVE_UP_S sets how long to wait)",
                file=sys.stderr,
            )
        return summary
    finally:
        telemetry.shutdown()


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.producer import ProduceSummary, SyntheticProducer
    from marketpipe.ingest.resume import resume_points

    cfg = with_overrides(
        settings.producer, PRODUCE_OPTIONS, **{k: getattr(args, k) for k in PRODUCE_OPTIONS}
    )
    faults = with_overrides(
        cfg.faults, FAULT_OPTIONS, **{k: getattr(args, k) for k in FAULT_OPTIONS}
    )
    cfg = with_overrides(cfg, {"faults": "fault options"}, faults=faults.model_dump())
    topic = args.topic or settings.kafka.topic_raw
    log.info(
        "producing %s symbols to %s at %s",
        len(cfg.symbol_names()),
        topic,
        f"{cfg.tps:g} tps" if cfg.tps else "full speed",
    )

    def produce(publisher: Publisher, stop: StopFlag) -> ProduceSummary:
        resume = {}
        if cfg.resume:
            resume = resume_points(settings.kafka, topic, cfg.source, cfg.symbol_names())
            if resume:
                log.info("continuing %d symbols from their newest ticks in %s", len(resume), topic)
        return SyntheticProducer(cfg, publisher, topic, resume).run(stop)

    summary = _publish(settings, topic, "producer", cfg.source, produce)
    for line in summary.lines():
        print(line)
    return EXIT_OK if summary.delivery.ok else EXIT_FAILED


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.progress import Progress
    from marketpipe.ingest.readers import FileError
    from marketpipe.ingest.replay import Replayer, check_files

    cfg = with_overrides(
        settings.replay,
        {**REPLAY_OPTIONS, "header": "--header/--no-header"},
        header=args.header,
        **{k: getattr(args, k) for k in REPLAY_OPTIONS},
    )
    paths = [Path(p) for p in args.files]
    try:
        check_files(paths, cfg)
    except FileError as exc:
        print(f"marketpipe replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    topic = args.topic or settings.kafka.topic_raw
    summary = _publish(
        settings, topic, "replay", cfg.source,
        lambda publisher, stop: Replayer(cfg, publisher, topic, Progress()).run(paths, stop),
    )  # fmt: skip
    for line in summary.lines():
        print(line)
    if not summary.ok:
        return EXIT_FAILED
    rejected = sum(summary.accounting.rejected.values())
    return EXIT_FAILED if args.strict and rejected else EXIT_OK


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.live import LiveSource
    from marketpipe.ingest.polygon import AuthError, PolygonClient

    cfg = with_overrides(settings.live, LIVE_OPTIONS, **{k: getattr(args, k) for k in LIVE_OPTIONS})
    if not cfg.symbols:
        raise ConfigError("no symbols: pass --symbols or set MARKETPIPE_LIVE__SYMBOLS")
    try:
        client = PolygonClient(cfg)
    except AuthError as exc:
        raise ConfigError(str(exc)) from None
    topic = args.topic or settings.kafka.topic_raw
    try:
        summary = _publish(
            settings, topic, "live", cfg.source,
            lambda publisher, stop: LiveSource(cfg, client, publisher, topic).run(stop),
        )  # fmt: skip
    except AuthError as exc:
        print(f"marketpipe live: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for line in summary.lines():
        print(line)
    return EXIT_OK if summary.delivery.ok else EXIT_FAILED


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka import require_topic, wait_for_broker
    from marketpipe.kafka.transactions import Fenced, Unavailable
    from marketpipe.quality.service import QualityService
    from marketpipe.runtime import Readiness, stop_on_signals
    from marketpipe.telemetry import QualityInstruments, setup_telemetry

    cfg = with_overrides(
        settings.quality,
        {"delivery": "--delivery", "group_id": "--group", "instance_id": "--instance-id"},
        delivery=args.delivery,
        group_id=args.group,
        instance_id=args.instance_id,
    )
    telemetry = setup_telemetry(settings.otel, "quality")
    wait_for_broker(settings.kafka)
    kafka = settings.kafka
    for topic in (kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, kafka.topic_quality_state):
        require_topic(kafka, topic)
    readiness = Readiness(settings.health_file)
    service = QualityService(
        kafka, cfg, QualityInstruments.create(telemetry.meter), readiness=readiness
    )
    log.info(
        "checking %s -> %s / %s (%s, group %s)",
        kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, cfg.delivery, cfg.group_id,
    )  # fmt: skip
    failure: str | None = None
    code = EXIT_OK
    try:
        with stop_on_signals(stop_flag(settings)) as stop:
            telemetry.watch(stop, readiness)
            service.run(stop, idle_exit_s=args.until_idle)
    except Fenced as exc:
        failure, code = f"fenced by another instance with the same id, stopping: {exc}", EXIT_FAILED
    except Unavailable as exc:
        failure, code = str(exc), EXIT_UNAVAILABLE
    finally:
        telemetry.shutdown()
    for line in service.report.lines():  # on every way out: what was committed, what is left
        print(line)
    if failure:
        print(f"marketpipe quality: {failure}", file=sys.stderr)
        return code
    return EXIT_OK if service.report.balanced else EXIT_FAILED


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from marketpipe.runtime import wait_for
    from marketpipe.sinks.migrations import create_database, migrate

    pg = settings.postgres
    where = f"PostgreSQL at {pg.host}:{pg.port}/{pg.database}"
    try:
        if args.create_database:
            admin = pg.conninfo("postgres")
            server = f"PostgreSQL at {pg.host}:{pg.port}"
            wait_for(server, lambda: psycopg.connect(admin, connect_timeout=3).close(), 30.0)
            if create_database(admin, pg.database):
                print(f"created database {pg.database}")
        wait_for(where, lambda: psycopg.connect(pg.conninfo(), connect_timeout=3).close(), 30.0)
        for line in migrate(pg.conninfo()):
            print(line)
    except psycopg.Error as exc:
        print(f"marketpipe db migrate: {where}: {exc}".strip(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.job import FeatureJob, quiet_query_errors, spark_session
    from marketpipe.kafka import require_topic, wait_for_broker
    from marketpipe.runtime import Readiness, stop_on_signals
    from marketpipe.sinks.hub import FeatureSinks
    from marketpipe.telemetry import FeatureInstruments, setup_telemetry

    telemetry = setup_telemetry(settings.otel, "features")
    wait_for_broker(settings.kafka)
    require_topic(settings.kafka, settings.kafka.topic_valid)
    spark = spark_session(settings.features)
    if settings.log_level != "DEBUG":
        quiet_query_errors(spark)
    sinks = FeatureSinks(settings.features, settings.postgres, settings.s3)
    readiness = Readiness(settings.health_file)
    job = FeatureJob(spark, settings.kafka, settings.features, sinks, readiness,
                     FeatureInstruments.create(telemetry.meter))  # fmt: skip
    queries = job.start(available_now=args.available_now)
    log.info("features: %d streaming queries over %s", len(queries), settings.kafka.topic_valid)
    try:
        with stop_on_signals(stop_flag(settings)) as stop:
            telemetry.watch(stop, readiness)
            # Until stopped, every query done (--available-now), or one failed: the others
            # would run on without it, so the job stops and exits non-zero (a pod restarts).
            # A query retrying through a sink outage is neither: the loop (and so the
            # heartbeat) turns on while it waits.
            while not stop.is_set() and any(q.isActive for q in queries):
                if any(q.exception() is not None for q in queries):
                    break
                stop.wait(1.0)
        failed = job.stop()
    finally:
        sinks.close()
        spark.stop()
        telemetry.shutdown()
    for line in job.metrics.lines():
        print(line)
    for q in queries:
        why = job.failure(q)
        if why is None:
            print(f"{q.name}: stopped")
            continue
        # One line a person can act on; Spark's exception (with the query's whole plan) is
        # for DEBUG.
        print(f"marketpipe features: {why}", file=sys.stderr)
        log.debug("query %s: %s", q.name, q.exception())
    return EXIT_FAILED if failed else EXIT_OK


def _instant(text: str) -> int:
    from marketpipe.ingest.timeparse import parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an instant: {text!r} (ISO 8601 like 2024-03-08T14:30:00Z, or epoch seconds)"
        ) from None


def _range(args: argparse.Namespace) -> tuple[int, int]:
    if args.end <= args.start:
        raise ConfigError("--end must be after --start")
    return args.start, args.end


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.backfill import run_backfill
    from marketpipe.features.job import spark_session
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
    spark = spark_session(settings.features, "marketpipe-backfill")
    sinks = FeatureSinks(settings.features, settings.postgres, settings.s3)
    try:
        report = run_backfill(spark, settings, sinks, start, end, args.source)
    finally:
        sinks.close()
        spark.stop()
    for line in report.lines():
        print(line)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.validate import validate

    start, end = _range(args)
    report = validate(settings, start, end, args.sink)
    for line in report.lines():
        print(line)
    if not report.ticks:
        print("marketpipe validate: no archived ticks in that range", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_latest(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb
    import psycopg

    from marketpipe.sinks.latest import latest_tables, render

    sink = args.sink or settings.features.hot_sink
    try:
        tables = latest_tables(settings, sink)
    except (duckdb.Error, psycopg.Error) as exc:
        print(f"marketpipe latest: {sink}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for title, (columns, rows) in tables.items():
        print(f"-- {title}, newest per symbol ({sink})")
        for line in render(columns, rows) if rows else ["(none yet)"]:
            print(line)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.dashboard.server import check_can_serve, exec_streamlit

    cfg = with_overrides(
        settings.dashboard, DASHBOARD_OPTIONS, **{k: getattr(args, k) for k in DASHBOARD_OPTIONS}
    )
    check_can_serve(cfg)
    # The Streamlit script reads its settings as every stage does: from the environment.
    for name, value in cfg.model_dump(exclude_none=True).items():
        os.environ[env_name(("dashboard", name))] = str(value)
    url = f"http://{'127.0.0.1' if cfg.address == '0.0.0.0' else cfg.address}:{cfg.port}"
    print(f"marketpipe dashboard: {url} (hot store: {cfg.sink or settings.features.hot_sink})")
    sys.stdout.flush()
    exec_streamlit(cfg, args.env_file)
    return EXIT_OK  # not reached: exec replaced this process


def cmd_cold(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.sinks.parquet import cold_inventory

    root = settings.features.archive_root
    if not root:
        print("marketpipe cold: no cold store (MARKETPIPE_FEATURES__ARCHIVE_ROOT is empty)",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    try:
        datasets = cold_inventory(root, settings.s3)
    except OSError as exc:
        print(f"marketpipe cold: {root}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"cold store {root}")
    for d in datasets:
        print(f"  {d.name:<16} {d.files:>6} files {d.bytes / 1e6:>9.2f} MB  dates {d.dates[0]}"
              f"..{d.dates[1]}  newest {d.newest}")  # fmt: skip
    if not datasets:
        print("  (empty)")
    return EXIT_OK


def _smoke_problems(settings: Settings, sink: str, min_rows: int) -> tuple[list[str], list[str]]:
    """What the smoke check found (lines) and what it still misses (problems)."""
    import duckdb
    import psycopg

    from marketpipe.sinks.latest import row_counts
    from marketpipe.sinks.parquet import cold_inventory

    found: list[str] = []
    problems: list[str] = []
    try:
        counts = row_counts(settings, sink)
        found.append(f"{sink}: " + ", ".join(f"{t} {n} rows" for t, n in counts.items()))
        short = [
            f"{t} has {counts[t]}" for t in ("bars", "window_features") if counts[t] < min_rows
        ]
        if short:
            problems.append(f"{sink}: {', '.join(short)} rows (want >= {min_rows})")
    except (duckdb.Error, psycopg.Error) as exc:
        problems.append(f"{sink}: {str(exc).strip().splitlines()[0]}")
    root = settings.features.archive_root
    if root:
        try:
            datasets = {d.name: d for d in cold_inventory(root, settings.s3)}
            found.append(f"cold {root}: " + (", ".join(
                f"{d.name} {d.files} files" for d in datasets.values()) or "empty"))  # fmt: skip
            if "raw" not in datasets:
                problems.append(f"cold store {root}: no raw tick files yet")
        except OSError as exc:
            problems.append(f"cold store {root}: {exc}")
    return found, problems


def cmd_smoke(args: argparse.Namespace, settings: Settings) -> int:
    """Wait until features reach the hot store and ticks the cold store (`helm test`)."""
    import time

    sink = args.sink or settings.features.hot_sink
    deadline = time.monotonic() + args.timeout
    while True:
        found, problems = _smoke_problems(settings, sink, args.min_rows)
        if not problems:
            for line in found:
                print(line)
            print("smoke: OK")
            return EXIT_OK
        if time.monotonic() >= deadline:
            for line in found:
                print(line)
            for line in problems:
                print(f"smoke: {line}", file=sys.stderr)
            print(f"smoke: FAILED after {args.timeout:g}s", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(args.interval)


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """Copy objects under an s3:// prefix into a folder (the replay Job's input)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from marketpipe.objectstore import download_prefix, s3_client

    dest = Path(args.dest)
    try:
        count, size = download_prefix(s3_client(settings.s3), args.url, dest)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        print(f"marketpipe fetch: {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if count == 0:
        print(f"marketpipe fetch: nothing under {args.url}", file=sys.stderr)
        return EXIT_FAILED
    print(f"fetched {count} objects, {size / 1e6:.2f} MB, from {args.url} into {dest}")
    return EXIT_OK


def cmd_bucket(args: argparse.Namespace, settings: Settings) -> int:
    """Create the object store bucket unless it exists (idempotent; a Helm hook runs it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from marketpipe.objectstore import ensure_bucket, s3_client
    from marketpipe.runtime import wait_for

    s3 = settings.s3
    client = s3_client(s3)
    where = f"object store at {s3.endpoint_url or 'AWS S3'}"
    try:
        wait_for(where, client.list_buckets, 60.0)  # MinIO may still be starting
        print(ensure_bucket(client, s3.bucket, s3.region))
    except (BotoCoreError, ClientError) as exc:
        print(f"marketpipe bucket: {where}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    """The release's pods through the Kubernetes API; logs of the unhealthy ones."""
    from marketpipe import cluster

    try:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError
    except ImportError:
        raise ConfigError(
            "`marketpipe cluster` needs the k8s extra: pip install marketpipe[k8s]"
        ) from None
    try:
        api = cluster.core_api(args.kubeconfig)
        pods = cluster.release_pods(api, args.namespace, args.release)
    except (ConfigException, ApiException, HTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"marketpipe cluster: Kubernetes API: {first}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    health = [cluster.pod_health(p) for p in pods]
    lines, healthy = cluster.verdict(health)
    for line in lines:
        print(line)
    if args.logs:
        for pod, h in zip(pods, health, strict=True):
            if not h.healthy:
                for line in cluster.tail_logs(api, args.namespace, pod, args.logs):
                    print(line)
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka import ensure_topics, pipeline_topics, wait_for_broker

    wait_for_broker(settings.kafka)
    for line in ensure_topics(settings.kafka, pipeline_topics(settings.kafka)):
        print(line)
    return EXIT_OK


def cmd_summary(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka import read_to_end, wait_for_broker
    from marketpipe.topicstats import TopicSummary

    topic = args.topic or settings.kafka.topic_raw
    wait_for_broker(settings.kafka)
    summary = TopicSummary()
    for msg in read_to_end(settings.kafka, topic, since_ms=args.since):
        summary.add(msg.value(), msg.headers())
    for line in summary.lines(topic):
        print(line)
    return EXIT_OK


def cmd_local(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.local.stack import LocalStack

    services = args.only.split(",") if args.only else None
    stack = LocalStack(settings, services)
    if args.action == "down":
        for line in stack.down(purge=args.purge):
            print(line)
        return EXIT_OK
    statuses = stack.up() if args.action == "up" else stack.status()
    if not statuses:
        print(f"no local stack at {stack.data_dir}: run `marketpipe local up`")
        return EXIT_UNAVAILABLE
    for st in statuses:
        state = "up" if st.healthy else ("not answering" if st.running else "down")
        pid = f"pid {st.pid}" if st.pid else ""
        print(f"{st.name:<9}{state:<15}{pid:<12}{st.detail}")
    if args.action == "up":
        print(f"endpoints written to {stack.endpoints_path}")
    return EXIT_OK if all(s.healthy for s in statuses) else EXIT_UNAVAILABLE


def cmd_contracts(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.contracts import SCHEMA_PATH, export_schema, render_schema

    path = Path(args.path or SCHEMA_PATH)
    if args.check:
        if not path.exists() or path.read_bytes() != render_schema():
            print(f"{path} is stale: run `marketpipe contracts`", file=sys.stderr)
            return EXIT_FAILED
        print(f"{path} is up to date")
        return EXIT_OK
    print(f"wrote {export_schema(path)}")
    return EXIT_OK


_startup_beats: list[threading.Event] = []


def start_heartbeat(settings: Settings) -> None:
    """With MARKETPIPE_HEALTH_FILE set, beat it while the command starts up (waiting for its
    services); ``stop_flag`` hands the beat over to the command's main loop."""
    from marketpipe.runtime import Heartbeat

    if settings.health_file:
        _startup_beats.append(Heartbeat(settings.health_file).beat_in_background())


def stop_flag(settings: Settings) -> StopFlag:
    """The stop flag of a long-running command, beating MARKETPIPE_HEALTH_FILE if set."""
    from marketpipe.runtime import Heartbeat, StopFlag

    while _startup_beats:
        _startup_beats.pop().set()
    return StopFlag(Heartbeat(settings.health_file) if settings.health_file else None)


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 while the service's heartbeat is fresh: the Kubernetes liveness probe. With
    ``--ready``, also while no part of it is in trouble: the readiness probe (a stage retrying
    through an outage is alive, and not ready)."""
    from marketpipe.runtime import READY, heartbeat_age, read_readiness

    path = args.file or settings.health_file
    if not path:
        raise ConfigError("no heartbeat file: set MARKETPIPE_HEALTH_FILE or pass --file")
    age = heartbeat_age(path)
    if age is None:
        print(f"unhealthy: no heartbeat at {path}", file=sys.stderr)
        return EXIT_FAILED
    if age > args.max_age:
        limit = f"{args.max_age:g}s"
        print(f"unhealthy: last heartbeat {age:.0f}s ago (limit {limit})", file=sys.stderr)
        return EXIT_FAILED
    if args.ready:
        state = read_readiness(path) or READY
        if state != READY:
            print(f"not ready: {state}", file=sys.stderr)
            return EXIT_FAILED
        print(f"ready: last heartbeat {age:.1f}s ago")
        return EXIT_OK
    print(f"healthy: last heartbeat {age:.1f}s ago")
    return EXIT_OK


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings as environment lines, secrets masked."""
    from marketpipe.settings import flatten_env

    for name, value in flatten_env(settings).items():
        print(f"{name}={value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketpipe",
        description="Realtime market-data pipeline. Every option can also be set as an "
        "environment variable MARKETPIPE_<SECTION>__<FIELD>; see `marketpipe settings`.",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("produce", help="publish synthetic trades+quotes (GBM) to ticks.raw")
    _add_options(
        p,
        PRODUCE_OPTIONS,
        {
            "symbols": "comma-separated symbols, each NAME or NAME:START_PRICE, e.g. "
            "AAPL:189.5,MSFT:415 (default: --symbol-count SYMnnn names)",
            "symbol_count": "how many SYMnnn symbols when --symbols is not given (default 10)",
            "tps": "ticks per second over all symbols; 0 = as fast as possible (default 1000)",
            "jitter_ms": "uniform jitter of arrival times around the even schedule",
            "duration_s": "stop after this many seconds",
            "count": "stop after this many ticks",
            "history_s": "first publish this many seconds of generated history (past event "
            "times, sent at once), then go on live (default 0)",
            "history_tps": "ticks per second of market time in the history (default --tps)",
            "seed": "random seed for reproducible prices, sizes and faults",
            "start_price": "initial price of every symbol (default 100)",
            "drift": "annualised GBM drift (default 0)",
            "volatility": "annualised GBM volatility (default 0.3)",
            "tick_size": "price grid (default 0.01)",
            "spread_bps": "typical bid/ask spread in basis points of price (default 2)",
            "source": "value of the source field (default synthetic)",
        },
    )
    _add_options(
        p,
        FAULT_OPTIONS,
        {
            "malformed": "fraction of extra malformed messages",
            "crossed": "fraction of ticks with a crossed quote (bid > ask)",
            "duplicate": "fraction of ticks sent twice",
            "out_of_order": "fraction of ticks with an event time pushed into the past",
        },
    )
    p.add_argument("--topic", help="target topic (default MARKETPIPE_KAFKA__TOPIC_RAW)")
    p.set_defaults(handler=cmd_produce)

    p = sub.add_parser(
        "replay",
        help="publish historical tick files (kibot, CSV, Parquet; gzip ok) with their event times",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="files (or Parquet folders) in order")
    _add_options(
        p,
        REPLAY_OPTIONS,
        {
            "format": "auto (default), kibot, csv or parquet",
            "preset": "a known CSV layout: ccxt-trades, histdata-quotes",
            "columns": "FIELD=COLUMN pairs (column name or 0-based position), fields: "
            "time,symbol,price,size,bid,ask,bid_size,ask_size,seq,source",
            "delimiter": "CSV delimiter (default ,)",
            "time_unit": "epoch unit of the time column: s, ms, us, ns",
            "time_format": "iso, or a strptime format like '%%Y%%m%%d %%H%%M%%S%%f'",
            "tz": "zone of naive times: IANA name, UTC or ±HH:MM (kibot default America/New_York)",
            "price_scale": "multiply prices by this (e.g. 0.0001 for integer pips)",
            "symbol": "symbol for files without a symbol column (default: file name)",
            "only_symbols": "publish only these symbols (comma-separated)",
            "speed": "1 = real time, N = N times faster, 0 = as fast as possible (default)",
            "start_at": "skip rows before this instant (ISO 8601 or epoch) to resume",
            "source": "value of the source field (default replay)",
        },
    )
    p.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="whether CSV files start with a header (default: yes unless columns are positions)",
    )  # fmt: skip
    p.add_argument("--topic", help="target topic (default MARKETPIPE_KAFKA__TOPIC_RAW)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any row was rejected")
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("live", help="poll a Polygon.io-style REST API and publish new trades")
    _add_options(
        p,
        LIVE_OPTIONS,
        {
            "symbols": "comma-separated symbols to poll",
            "base_url": "API base URL (default https://api.polygon.io)",
            "poll_interval_s": "seconds between poll rounds (default 1)",
            "duration_s": "stop after this many seconds (default: run until stopped)",
            "source": "value of the source field (default polygon)",
        },
    )
    p.add_argument("--topic", help="target topic (default MARKETPIPE_KAFKA__TOPIC_RAW)")
    p.set_defaults(handler=cmd_live)

    p = sub.add_parser(
        "quality", help="check ticks.raw; valid ticks to ticks.valid, the rest to ticks.dlq"
    )
    p.add_argument("--delivery", choices=["exactly_once", "at_least_once"], help="guarantee")
    p.add_argument("--group", dest="group", help="consumer group (default marketpipe-quality)")
    p.add_argument("--instance-id", help="stable id of this instance (default: host name)")
    p.add_argument(
        "--until-idle", type=float, metavar="S", help="stop after S seconds without input"
    )
    p.set_defaults(handler=cmd_quality)

    p = sub.add_parser(
        "features",
        help="Spark Structured Streaming: ticks.valid -> bars, window features, indicators",
    )
    p.add_argument(
        "--available-now", action="store_true",
        help="process what the topic holds now, then exit (a bounded run)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_features)

    range_help = "ISO 8601 instant (UTC unless it has an offset) or epoch seconds/ms/us"
    p = sub.add_parser(
        "backfill", help="the features transforms as a bounded job over the archive or topic"
    )
    p.add_argument("--start", required=True, type=_instant, help="first event time; " + range_help)
    p.add_argument("--end", required=True, type=_instant, help="end of the range (excluded)")
    p.add_argument(
        "--source", choices=["archive", "topic"], default="archive",
        help="the raw Parquet archive (default) or ticks.valid from its earliest offset",
    )  # fmt: skip
    p.set_defaults(handler=cmd_backfill)

    p = sub.add_parser(
        "validate",
        help="recompute bars, window features, indicators from the archive; compare a sink",
    )
    p.add_argument("--start", required=True, type=_instant, help="first event time; " + range_help)
    p.add_argument("--end", required=True, type=_instant, help="end of the range (excluded)")
    p.add_argument(
        "--sink", choices=["duckdb", "postgres"],
        help="which hot sink to check (default: the first configured)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("latest", help="the newest bars, window features, indicators per symbol")
    p.add_argument("--sink", choices=["duckdb", "postgres"], help="default: the first hot sink")
    p.set_defaults(handler=cmd_latest)

    p = sub.add_parser(
        "dashboard",
        help="web dashboard: candlesticks, indicators, volatility, pipeline health (Streamlit)",
    )
    _add_options(
        p,
        DASHBOARD_OPTIONS,
        {
            "address": "address to bind (default 127.0.0.1; 0.0.0.0 in a pod)",
            "port": "web server port (default 8501)",
            "sink": "hot store to read, duckdb or postgres (default: the first hot sink)",
            "refresh_s": "seconds between automatic refreshes (default 5)",
            "prometheus_url": "Prometheus scraping the stages, for rates, lag, DLQ reasons",
        },
    )
    p.set_defaults(handler=cmd_dashboard)

    p = sub.add_parser("cold", help="what the cold Parquet store holds, per dataset")
    p.set_defaults(handler=cmd_cold)

    p = sub.add_parser("db", help="the hot store's schema: `marketpipe db migrate`")
    p.add_argument("action", choices=["migrate"])
    p.add_argument(
        "--create-database", action="store_true",
        help="first create MARKETPIPE_POSTGRES__DATABASE if it does not exist (needs CREATEDB)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_db)

    p = sub.add_parser("topics", help="create or converge the pipeline topics (idempotent)")
    p.set_defaults(handler=cmd_topics)

    p = sub.add_parser("summary", help="per-symbol counts and first/last price of a topic")
    p.add_argument("--topic", help="topic to read (default MARKETPIPE_KAFKA__TOPIC_RAW)")
    p.add_argument(
        "--since",
        type=int,
        metavar="EPOCH_MS",
        help="only messages stamped at or after this time (epoch milliseconds)",
    )
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("local", help="run the real local services as processes")
    p.add_argument("action", choices=["up", "status", "down"])
    p.add_argument("--only", help="comma-separated subset of kafka,postgres,s3")
    p.add_argument("--purge", action="store_true", help="with down: also delete the data")
    p.set_defaults(handler=cmd_local)

    p = sub.add_parser("contracts", help="write the tick JSON Schema (or --check it)")
    p.add_argument("--path", help="output file (default contracts/tick.schema.json)")
    p.add_argument("--check", action="store_true", help="fail if the file is not current")
    p.set_defaults(handler=cmd_contracts)

    p = sub.add_parser("settings", help="print the effective settings as environment lines")
    p.set_defaults(handler=cmd_settings)

    p = sub.add_parser(
        "smoke", help="wait until features reach the hot store and ticks the cold store"
    )
    p.add_argument("--sink", choices=["duckdb", "postgres"], help="hot sink (default: first)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after")
    p.add_argument("--interval", type=float, default=5.0, metavar="S", help="between checks")
    p.add_argument("--min-rows", type=int, default=1, help="rows wanted in bars and features")
    p.set_defaults(handler=cmd_smoke)

    p = sub.add_parser(
        "cluster", help="a Helm release's pods on Kubernetes: phase, readiness, restarts, logs"
    )
    p.add_argument("--namespace", default="marketpipe", help="namespace (default marketpipe)")
    p.add_argument("--release", default="marketpipe", help="Helm release (default marketpipe)")
    p.add_argument("--logs", type=int, default=50, metavar="N",
                   help="last N log lines of each unhealthy pod (0: none)")  # fmt: skip
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    p.set_defaults(handler=cmd_cluster)

    p = sub.add_parser("bucket", help="create the object store bucket if missing (idempotent)")
    p.set_defaults(handler=cmd_bucket)

    p = sub.add_parser("fetch", help="copy objects under s3://BUCKET/PREFIX into a folder")
    p.add_argument("url", help="s3://bucket/prefix (credentials from MARKETPIPE_S3__*)")
    p.add_argument("dest", help="folder to write into (created if missing)")
    p.set_defaults(handler=cmd_fetch)

    p = sub.add_parser(
        "health", help="exit 0 while a service's heartbeat file is fresh (liveness probe)"
    )
    p.add_argument("--file", help="heartbeat file (default MARKETPIPE_HEALTH_FILE)")
    p.add_argument(
        "--ready",
        action="store_true",
        help="readiness probe: also exit 1 while the service is not doing useful work "
        "(e.g. retrying through an outage); prints why",
    )
    p.add_argument(
        "--max-age", type=float, default=60.0, metavar="S", help="oldest acceptable beat"
    )
    p.set_defaults(handler=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except ConfigError as exc:
        print(f"marketpipe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from marketpipe.telemetry import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if args.command in LONG_RUNNING:
        start_heartbeat(settings)
    return run_handler(args.handler, args, settings)


def run_handler(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    """Translate the failures users can act on into one clear line and an exit code."""
    from confluent_kafka import KafkaException

    from marketpipe.kafka import TopicMissing
    from marketpipe.local.process import ServiceError
    from marketpipe.runtime import DependencyUnavailable

    try:
        return handler(args, settings)
    except ConfigError as exc:
        print(f"marketpipe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (DependencyUnavailable, ServiceError, TopicMissing, KafkaException) as exc:
        print(f"marketpipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print(f"marketpipe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`marketpipe summary | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
