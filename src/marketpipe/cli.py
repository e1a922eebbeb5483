"""``marketpipe``: one command, a subcommand per service. Entry points stay thin: they load
settings, set up logging and telemetry, wire components and translate failures to exit codes.

Exit codes: 0 success; 1 the run finished but lost or failed records; 2 bad usage or settings;
3 a dependency (broker, database, object store, local service) is unavailable.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from marketpipe.cliopts import SectionOptions
from marketpipe.output import add_output_option, emit, wants_json
from marketpipe.runner import finish
from marketpipe.settings import (
    ConfigError,
    DashboardSettings,
    FaultSettings,
    HotSink,
    LiveSettings,
    ProducerSettings,
    QualitySettings,
    ReplaySettings,
    Settings,
    env_name,
    load_settings,
    with_overrides,
)  # fmt: skip

if TYPE_CHECKING:
    from marketpipe.kafka import Publisher
    from marketpipe.local.stack import ServiceStatus
    from marketpipe.runtime import StopFlag

log = logging.getLogger("marketpipe")
_SummaryT = TypeVar("_SummaryT")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace, Settings], int]

# Options that set a settings field: flag, type, default, choices and help come from the field
# (None: the flag is the field's name, see cliopts.flag_of).
PRODUCE = SectionOptions(("producer",), ProducerSettings, {
    "symbols": None, "symbol_count": None, "tps": None, "jitter_ms": None, "duration_s": None,
    "count": None, "history_s": None, "history_tps": None, "seed": None, "start_price": None,
    "drift": None, "volatility": None, "tick_size": None, "spread_bps": None, "source": None,
    "resume": None,
})  # fmt: skip
FAULTS = SectionOptions(("producer", "faults"), FaultSettings, dict.fromkeys(
    ("malformed", "crossed", "duplicate", "out_of_order", "out_of_order_ms")
))  # fmt: skip
REPLAY = SectionOptions(("replay",), ReplaySettings, dict.fromkeys((
    "format", "preset", "columns", "header", "delimiter", "time_unit", "time_format", "tz",
    "price_scale", "symbol", "only_symbols", "speed", "start_at", "source",
)))  # fmt: skip
LIVE = SectionOptions(("live",), LiveSettings, {
    "symbols": None, "base_url": None, "poll_interval_s": "--interval", "duration_s": None,
    "source": None,
})  # fmt: skip
QUALITY = SectionOptions(("quality",), QualitySettings, {
    "delivery": None, "group_id": "--group", "instance_id": None,
})  # fmt: skip
DASHBOARD = SectionOptions(("dashboard",), DashboardSettings, dict.fromkeys(
    ("address", "port", "sink", "refresh_s", "prometheus_url")
))  # fmt: skip
#: Every section's options, for the test that walks them.
SECTION_OPTIONS = (PRODUCE, FAULTS, REPLAY, LIVE, QUALITY, DASHBOARD)


def _publish(
    settings: Settings,
    topic: str,
    service: str,
    source: str,
    run: Callable[[Publisher, StopFlag], _SummaryT],
) -> _SummaryT:
    """What every source command adds to the runner: a counting publisher to ``topic``."""
    from marketpipe.kafka import Publisher
    from marketpipe.runner import service as running
    from marketpipe.telemetry import ProducerInstruments

    with running(settings, service, [topic]) as ctx:
        publisher = Publisher(
            settings.kafka,
            ProducerInstruments.create(ctx.telemetry.meter),
            {"source": source, "topic": topic},
            stopping=ctx.stop.is_set,
            give_up=lambda reason: ctx.stop.set("give-up"),
            readiness=ctx.readiness,
        )
        summary = run(publisher, ctx.stop)
    if publisher.report.gave_up:
        print(
            f"marketpipe {service}: gave up: {publisher.report.gave_up} (is the broker up? "
            "MARKETPIPE_KAFKA__GIVE_UP_S sets how long to wait)",
            file=sys.stderr,
        )
    return summary


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.producer import ProduceSummary, SyntheticProducer
    from marketpipe.ingest.resume import resume_points

    cfg = PRODUCE.apply(settings.producer, args)
    faults = FAULTS.apply(cfg.faults, args)
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
    return finish("produce", summary.lines(), EXIT_OK if summary.delivery.ok else EXIT_FAILED)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.progress import Progress
    from marketpipe.ingest.readers import FileError
    from marketpipe.ingest.replay import Replayer, check_files

    cfg = REPLAY.apply(settings.replay, args)
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
    rejected = sum(summary.accounting.rejected.values())
    failed = not summary.ok or (args.strict and rejected)
    return finish("replay", summary.lines(), EXIT_FAILED if failed else EXIT_OK)


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.live import LiveSource
    from marketpipe.ingest.polygon import AuthError, PolygonClient

    cfg = LIVE.apply(settings.live, args)
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
        return finish("live", [], EXIT_CONFIG, str(exc))
    return finish("live", summary.lines(), EXIT_OK if summary.delivery.ok else EXIT_FAILED)


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka.transactions import Fenced, Unavailable
    from marketpipe.quality.service import QualityService
    from marketpipe.runner import service
    from marketpipe.telemetry import QualityInstruments

    cfg = QUALITY.apply(settings.quality, args)
    kafka = settings.kafka
    topics = [kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, kafka.topic_quality_state]
    checker: QualityService | None = None
    failure: str | None = None
    code = EXIT_OK
    try:
        with service(settings, "quality", topics) as ctx:
            instruments = QualityInstruments.create(ctx.telemetry.meter)
            checker = QualityService(kafka, cfg, instruments, readiness=ctx.readiness)
            log.info(
                "checking %s -> %s / %s (%s, group %s)",
                kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, cfg.delivery, cfg.group_id,
            )  # fmt: skip
            checker.run(ctx.stop, idle_exit_s=args.until_idle)
    except Fenced as exc:
        failure, code = f"fenced by another instance with the same id, stopping: {exc}", EXIT_FAILED
    except Unavailable as exc:
        failure, code = str(exc), EXIT_UNAVAILABLE
    if checker is None:  # never started: the runner's failure (broker, topics) says why
        return finish("quality", [], code, failure)
    if failure is None and not checker.report.balanced:
        code = EXIT_FAILED
    # On every way out: what was committed, what is left.
    return finish("quality", checker.report.lines(), code, failure)


DB_WAIT_S = 10.0
DB_HINT = (
    "is it running? `marketpipe local up` starts the local one; "
    "MARKETPIPE_POSTGRES__HOST and __PORT say where it is"
)


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
            wait_for(server, lambda: psycopg.connect(admin, connect_timeout=3).close(),
                     DB_WAIT_S, hint=DB_HINT)  # fmt: skip
            if create_database(admin, pg.database):
                print(f"created database {pg.database}")

        def probe() -> None:
            try:
                psycopg.connect(pg.conninfo(), connect_timeout=3).close()
            except psycopg.OperationalError as exc:
                if f'database "{pg.database}" does not exist' in str(exc):
                    raise ConfigError(
                        f"{where}: database {pg.database!r} does not exist: "
                        "`marketpipe db migrate --create-database` creates it"
                    ) from None
                raise

        wait_for(where, probe, DB_WAIT_S, hint=DB_HINT, fatal=(ConfigError,))
        for line in migrate(pg.conninfo()):
            print(line)
    except psycopg.Error as exc:
        print(f"marketpipe db migrate: {where}: {exc}".strip(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.features.job import FeatureJob, quiet_query_errors, spark_session
    from marketpipe.runner import service
    from marketpipe.sinks.hub import FeatureSinks
    from marketpipe.telemetry import FeatureInstruments

    with service(settings, "features", [settings.kafka.topic_valid]) as ctx:
        spark = spark_session(settings.features)
        if settings.log_level != "DEBUG":
            quiet_query_errors(spark)
        sinks = FeatureSinks(settings.features, settings.postgres, settings.s3)
        try:
            job = FeatureJob(spark, settings.kafka, settings.features, sinks, ctx.readiness,
                             FeatureInstruments.create(ctx.telemetry.meter))  # fmt: skip
            queries = job.start(available_now=args.available_now)
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
        finally:
            sinks.close()
            spark.stop()
    lines = job.metrics.lines()
    failures = []
    for q in queries:
        why = job.failure(q)
        if why is None:
            lines.append(f"{q.name}: stopped")
            continue
        # One line a person can act on; Spark's exception (with the query's whole plan) is
        # for DEBUG.
        failures.append(why)
        log.debug("query %s: %s", q.name, q.exception())
    return finish(
        "features", lines, EXIT_FAILED if failed else EXIT_OK, "; ".join(failures) or None
    )


def _instant(text: str) -> int:
    """An instant option's value as epoch µs, through the one parser every command uses."""
    from marketpipe.ingest.timeparse import INSTANT_SYNTAX, parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an instant: {text!r}; want {INSTANT_SYNTAX}"
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
    if wants_json(args):
        emit(report.as_dict())
    else:
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
    except (duckdb.Error, psycopg.Error) as exc:  # StoreUnavailable: run_handler says it
        print(f"marketpipe latest: {sink}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if wants_json(args):
        emit({
            "sink": sink,
            "tables": {
                title: [dict(zip(columns, row, strict=True)) for row in rows]
                for title, (columns, rows) in tables.items()
            },
        })  # fmt: skip
        return EXIT_OK
    for title, (columns, rows) in tables.items():
        print(f"-- {title}, newest per symbol ({sink})")
        for line in render(columns, rows) if rows else ["(none yet)"]:
            print(line)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.dashboard.server import check_can_serve, exec_streamlit

    cfg = DASHBOARD.apply(settings.dashboard, args)
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
    if not root.startswith("s3://") and not Path(root).exists():
        print(f"marketpipe cold: no cold store at {root} yet: the features job writes it "
              "(`marketpipe features`)", file=sys.stderr)  # fmt: skip
        return EXIT_UNAVAILABLE
    try:
        datasets = cold_inventory(root, settings.s3)
    except OSError as exc:
        text = str(exc)
        if "NETWORK_CONNECTION" in text or "connect" in text.lower():
            text = (
                f"the object store at {settings.s3.endpoint_url or 'AWS S3'} is not answering "
                f"({text.rsplit(': ', 1)[-1]}); `marketpipe local up` starts the local one, "
                "MARKETPIPE_S3__ENDPOINT_URL says where it is"
            )
        print(f"marketpipe cold: {root}: {text}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if wants_json(args):
        emit({"root": root, "datasets": datasets})
        return EXIT_OK
    print(f"cold store {root}")
    for d in datasets:
        print(f"  {d.name:<16} {d.files:>6} files {d.bytes / 1e6:>9.2f} MB  dates {d.dates[0]}"
              f"..{d.dates[1]}  newest {d.newest}")  # fmt: skip
    if not datasets:
        print("  (empty)")
    return EXIT_OK


def _smoke_problems(
    settings: Settings, sink: HotSink, min_rows: int
) -> tuple[list[str], list[str]]:
    """What the smoke check found (lines) and what it still misses (problems)."""
    import duckdb
    import psycopg

    from marketpipe.sinks.latest import StoreUnavailable, row_counts
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
    except (duckdb.Error, psycopg.Error, StoreUnavailable) as exc:
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
    if wants_json(args):
        emit({
            "namespace": args.namespace, "release": args.release, "healthy": healthy,
            "pods": [{**dataclasses.asdict(h), "healthy": h.healthy} for h in health],
        })  # fmt: skip
        return EXIT_OK if healthy else EXIT_FAILED
    for line in lines:
        print(line)
    if args.logs:
        for pod, h in zip(pods, health, strict=True):
            if not h.healthy:
                for line in cluster.tail_logs(api, args.namespace, pod, args.logs):
                    print(line)
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    """Create the chart's generated Secrets once; never overwrite a value (a Helm hook)."""
    from marketpipe import cluster
    from marketpipe.k8s_secrets import ensure, parse_spec

    try:
        specs = [parse_spec(text) for text in args.secrets]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    labels = dict(label.split("=", 1) for label in args.label)
    try:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException
    except ImportError:
        raise ConfigError(
            "`marketpipe secrets` needs the k8s extra: pip install marketpipe[k8s]"
        ) from None
    try:
        api = cluster.core_api(args.kubeconfig)
        for spec in specs:
            print(ensure(api, args.namespace, spec, labels))
    except (ConfigException, ApiException, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).strip().splitlines()[0]
        print(f"marketpipe secrets: Kubernetes API: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


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
    since_ms = None if args.since is None else args.since // 1000
    for msg in read_to_end(settings.kafka, topic, since_ms=since_ms):
        summary.add(msg.value(), msg.headers())
    if wants_json(args):
        emit(summary.as_dict(topic))
        return EXIT_OK
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
        print(f"no local stack at {stack.data_dir}: run `marketpipe local up`", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if wants_json(args):
        emit({
            "data_dir": stack.data_dir, "healthy": all(s.healthy for s in statuses),
            "services": [
                {"name": st.name, "state": _state(st), "pid": st.pid, "detail": st.detail}
                for st in statuses
            ],
        })  # fmt: skip
        return EXIT_OK if all(s.healthy for s in statuses) else EXIT_UNAVAILABLE
    for st in statuses:
        pid = f"pid {st.pid}" if st.pid else ""
        print(f"{st.name:<9}{_state(st):<15}{pid:<12}{st.detail}")
    if args.action == "up":
        print(f"endpoints written to {stack.endpoints_path}")
    return EXIT_OK if all(s.healthy for s in statuses) else EXIT_UNAVAILABLE


def _state(st: ServiceStatus) -> str:
    return "up" if st.healthy else ("not answering" if st.running else "down")


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

    if args.reference:
        from marketpipe.settings_doc import markdown

        print(markdown(), end="")
        return EXIT_OK
    values = flatten_env(settings)
    if wants_json(args):
        emit(values)
        return EXIT_OK
    for name, value in values.items():
        print(f"{name}={value}")
    return EXIT_OK


#: Options of each command that set settings fields (cliopts.SectionOptions).
COMMAND_OPTIONS: dict[str, tuple[tuple[SectionOptions, str | None], ...]] = {
    "produce": ((PRODUCE, None), (FAULTS, "injected faults (fractions of the good ticks)")),
    "replay": ((REPLAY, None),),
    "live": ((LIVE, None),),
    "quality": ((QUALITY, None),),
    "dashboard": ((DASHBOARD, None),),
}
_TOPIC_HELP = "target topic (default: MARKETPIPE_KAFKA__TOPIC_RAW)"
_RANGE_HELP = "ISO 8601 (UTC unless it has an offset) or epoch with a unit: 1709908200s"


class _Commands:
    """Subcommands with a one-line help in the list, and a description and an example in
    their own ``--help``."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, title: str) -> None:
        self.sub = parser.add_subparsers(dest=dest, required=True, metavar=title)

    def add(
        self, name: str, summary: str, example: str, handler: Handler | None = None,
        details: str = "",
    ) -> argparse.ArgumentParser:  # fmt: skip
        description = textwrap.fill(summary[0].upper() + summary[1:] + "." + details, 78)
        p = self.sub.add_parser(
            name, help=summary, description=description,
            epilog="example:\n  " + example, formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        for options, title in COMMAND_OPTIONS.get(name, ()):
            options.add_to(p, title)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marketpipe")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketpipe",
        description="Realtime market-data pipeline. Every option that sets a setting names its "
        "environment variable (MARKETPIPE_<SECTION>__<FIELD>); `marketpipe settings` shows them "
        "all with their effective values.",
    )
    parser.add_argument("--version", action="version", version=f"marketpipe {_version()}")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    cmd = _Commands(parser, "command", "COMMAND")

    p = cmd.add(
        "produce", "publish synthetic trades and quotes (geometric Brownian motion) to ticks.raw",
        "marketpipe produce --symbols AAPL:189.5,MSFT:415 --tps 2000 --duration 60 --crossed 0.01",
        cmd_produce,
    )  # fmt: skip
    p.add_argument("--topic", help=_TOPIC_HELP)

    p = cmd.add(
        "replay", "publish historical tick files (kibot, CSV, Parquet; gzip ok) to ticks.raw",
        "marketpipe replay data/IVE_tickbidask.txt.gz --speed 60", cmd_replay,
        " Ticks keep their event times; a file's layout is detected or described by --preset or "
        "--columns.",
    )  # fmt: skip
    p.add_argument("files", nargs="+", metavar="FILE", help="files (or Parquet folders) in order")
    p.add_argument("--topic", help=_TOPIC_HELP)
    p.add_argument("--strict", action="store_true", help="exit 1 if any row was rejected")

    p = cmd.add(
        "live", "poll a Polygon.io-style REST API and publish new trades to ticks.raw",
        "MARKETPIPE_LIVE__API_KEY=... marketpipe live --symbols AAPL,MSFT --interval 1", cmd_live,
    )  # fmt: skip
    p.add_argument("--topic", help=_TOPIC_HELP)

    p = cmd.add(
        "quality", "check ticks.raw: valid ticks to ticks.valid, the rest to ticks.dlq",
        "marketpipe quality --instance-id checker-0 --until-idle 10", cmd_quality,
        " Exactly once by default: each message lands in one of the two, once.",
    )  # fmt: skip
    p.add_argument(
        "--until-idle", type=float, metavar="S",
        help="exit once caught up and S seconds passed without input (a bounded run)",
    )  # fmt: skip

    p = cmd.add(
        "features", "Spark Structured Streaming: ticks.valid -> bars, window features, indicators",
        "MARKETPIPE_FEATURES__SINKS=duckdb,postgres marketpipe features", cmd_features,
        " Also archives the raw ticks to Parquet (MARKETPIPE_FEATURES__ARCHIVE_ROOT).",
    )  # fmt: skip
    p.add_argument(
        "--available-now", action="store_true",
        help="process what the topic holds now, then exit (a bounded run)",
    )  # fmt: skip

    p = cmd.add(
        "backfill", "the features transforms as a bounded job over the archive or the topic",
        "marketpipe backfill --start 2024-03-08T14:30:00Z --end 2024-03-08T21:00:00Z",
        cmd_backfill,
    )  # fmt: skip
    p.add_argument("--start", required=True, type=_instant, help="first event time; " + _RANGE_HELP)
    p.add_argument("--end", required=True, type=_instant, help="end of the range (excluded)")
    p.add_argument(
        "--source", choices=["archive", "topic"], default="archive",
        help="the raw Parquet archive (default) or ticks.valid from its earliest offset",
    )  # fmt: skip

    p = cmd.add(
        "validate", "recompute bars, window features, indicators from the archive; compare a sink",
        "marketpipe validate --start 2024-03-08T14:30:00Z --end 2024-03-08T15:30:00Z",
        cmd_validate, " Exits 1 on any missing, extra or differing row.",
    )  # fmt: skip
    p.add_argument("--start", required=True, type=_instant, help="first event time; " + _RANGE_HELP)
    p.add_argument("--end", required=True, type=_instant, help="end of the range (excluded)")
    p.add_argument(
        "--sink", choices=["duckdb", "postgres"],
        help="which hot sink to check (default: the first configured)",
    )  # fmt: skip
    add_output_option(p)

    p = cmd.add(
        "latest", "the newest bars, window features and indicators per symbol",
        "marketpipe latest --sink postgres", cmd_latest,
    )  # fmt: skip
    p.add_argument("--sink", choices=["duckdb", "postgres"], help="default: the first hot sink")
    add_output_option(p)

    cmd.add(
        "dashboard", "web dashboard: candlesticks, indicators, volatility, pipeline health",
        "marketpipe dashboard --sink postgres --prometheus-url http://127.0.0.1:9090",
        cmd_dashboard, " Streamlit; open the URL it prints.",
    )  # fmt: skip

    p = cmd.add(
        "cold", "what the cold Parquet store holds, per dataset", "marketpipe cold -o json",
        cmd_cold,
    )  # fmt: skip
    add_output_option(p)

    p = cmd.add("db", "the hot store's schema", "marketpipe db migrate")
    db = _Commands(p, "action", "ACTION")
    p = db.add(
        "migrate", "create or upgrade the feature tables in PostgreSQL/TimescaleDB (idempotent)",
        "marketpipe db migrate --create-database", cmd_db,
    )  # fmt: skip
    p.add_argument(
        "--create-database", action="store_true",
        help="first create MARKETPIPE_POSTGRES__DATABASE if it does not exist (needs CREATEDB)",
    )  # fmt: skip

    cmd.add(
        "topics", "create or converge the pipeline topics (idempotent)", "marketpipe topics",
        cmd_topics,
    )  # fmt: skip

    p = cmd.add(
        "summary", "per-symbol counts and first and last price of a topic; DLQ reasons",
        "marketpipe summary --topic ticks.dlq", cmd_summary,
    )  # fmt: skip
    p.add_argument("--topic", help="topic to read (default: MARKETPIPE_KAFKA__TOPIC_RAW)")
    p.add_argument(
        "--since", type=_instant, metavar="TIME",
        help="only messages stamped at or after this instant; " + _RANGE_HELP,
    )  # fmt: skip
    add_output_option(p)

    p = cmd.add("local", "the real local services, run as processes", "marketpipe local up")
    local = _Commands(p, "action", "ACTION")
    only = "comma-separated subset of kafka,postgres,s3 (default: all)"
    p = local.add(
        "up", "start the local broker, PostgreSQL and S3 server (idempotent)",
        "marketpipe local up --only kafka,postgres", cmd_local,
        " Writes their endpoints to .marketpipe/local/endpoints.env, which every command reads.",
    )  # fmt: skip
    p.add_argument("--only", help=only)
    p = local.add(
        "status", "the local services and their endpoints", "marketpipe local status -o json",
        cmd_local,
    )  # fmt: skip
    p.add_argument("--only", help=only)
    add_output_option(p)
    p = local.add(
        "down", "stop the local services (their data is kept unless --purge)",
        "marketpipe local down --purge", cmd_local,
    )  # fmt: skip
    p.add_argument("--only", help=only)
    p.add_argument("--purge", action="store_true", help="also delete their data")

    p = cmd.add(
        "contracts", "write the tick's JSON Schema (or --check it)", "marketpipe contracts --check",
        cmd_contracts,
    )  # fmt: skip
    p.add_argument("--path", help="output file (default contracts/tick.schema.json)")
    p.add_argument("--check", action="store_true", help="fail if the file is not current")

    p = cmd.add(
        "settings", "the effective settings as environment lines, secrets masked",
        "marketpipe settings | grep KAFKA", cmd_settings,
    )  # fmt: skip
    add_output_option(p)
    p.add_argument(
        "--reference", action="store_true",
        help="print the reference of every setting (docs/settings.md) instead",
    )  # fmt: skip

    p = cmd.add(
        "smoke", "wait until features reach the hot store and raw ticks the cold store",
        "marketpipe smoke --sink postgres --timeout 600", cmd_smoke, " What `helm test` runs.",
    )  # fmt: skip
    p.add_argument("--sink", choices=["duckdb", "postgres"], help="hot sink (default: first)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after")
    p.add_argument("--interval", type=float, default=5.0, metavar="S", help="between checks")
    p.add_argument("--min-rows", type=int, default=1, help="rows wanted in bars and features")

    p = cmd.add(
        "cluster", "a Helm release's pods on Kubernetes: phase, readiness, restarts, logs",
        "marketpipe cluster --namespace marketpipe --release marketpipe", cmd_cluster,
    )  # fmt: skip
    p.add_argument("--namespace", default="marketpipe", help="namespace (default marketpipe)")
    p.add_argument("--release", default="marketpipe", help="Helm release (default marketpipe)")
    p.add_argument("--logs", type=int, default=50, metavar="N",
                   help="last N log lines of each unhealthy pod (0: none)")  # fmt: skip
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    add_output_option(p)

    cmd.add(
        "bucket", "create the object store bucket if missing (idempotent)", "marketpipe bucket",
        cmd_bucket,
    )  # fmt: skip

    p = cmd.add(
        "secrets", "create Kubernetes Secrets with generated values once; never overwrite one",
        "marketpipe secrets --namespace mp mp-timescaledb:password mp-minio:root-user=user,"
        "root-password", cmd_secrets,
        " The chart's pre-install/pre-upgrade hook: a Secret that exists keeps its values; only "
        "keys it lacks are added.",
    )  # fmt: skip
    p.add_argument("secrets", nargs="+", metavar="NAME:KEY[=user|password],...")
    p.add_argument("--namespace", required=True, help="namespace of the Secrets")
    p.add_argument("--label", action="append", default=[], metavar="K=V",
                   help="label of a created Secret (repeatable)")  # fmt: skip
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")

    p = cmd.add(
        "fetch", "copy objects under s3://BUCKET/PREFIX into a folder",
        "marketpipe fetch s3://marketpipe/input/ /work/input", cmd_fetch,
    )  # fmt: skip
    p.add_argument("url", help="s3://bucket/prefix (credentials from MARKETPIPE_S3__*)")
    p.add_argument("dest", help="folder to write into (created if missing)")

    p = cmd.add(
        "health", "exit 0 while a service's heartbeat file is fresh (liveness probe)",
        "marketpipe health --max-age 60", cmd_health,
    )  # fmt: skip
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
