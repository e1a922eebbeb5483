"""``marketpipe``: one command, a subcommand per service. Entry points stay thin: they load
settings, set up logging and telemetry, wire components and translate failures to exit codes.

Exit codes: 0 success; 1 the run finished but lost or failed records; 2 bad usage or settings;
3 a dependency (broker, database, object store, local service) is unavailable.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence

from marketpipe.cliopts import SectionOptions
from marketpipe.commands.common import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE, instant
from marketpipe.commands.features import cmd_backfill, cmd_features, cmd_validate
from marketpipe.commands.ops import (
    cmd_bucket,
    cmd_cluster,
    cmd_contracts,
    cmd_fetch,
    cmd_health,
    cmd_local,
    cmd_secrets,
    cmd_settings,
    cmd_summary,
    cmd_topics,
)
from marketpipe.commands.options import (
    DASHBOARD,
    FAULTS,
    LIVE,
    PRODUCE,
    QUALITY,
    REPLAY,
    SECTION_OPTIONS,
)
from marketpipe.commands.quality import cmd_quality
from marketpipe.commands.sources import cmd_live, cmd_produce, cmd_replay
from marketpipe.commands.stores import cmd_cold, cmd_dashboard, cmd_db, cmd_latest, cmd_smoke
from marketpipe.output import add_output_option
from marketpipe.settings import ConfigError, Settings, load_settings

__all__ = ["SECTION_OPTIONS", "build_parser", "main"]


Handler = Callable[[argparse.Namespace, Settings], int]


#: Options of each command that set settings fields (cliopts.SectionOptions).
COMMAND_OPTIONS: dict[str, tuple[tuple[SectionOptions, str | None], ...]] = {
    "produce": ((PRODUCE, None), (FAULTS, "injected faults (fractions of the good ticks)")),
    "replay": ((REPLAY, None),),
    "live": ((LIVE, None),),
    "quality": ((QUALITY, None),),
    "dashboard": ((DASHBOARD, None),),
}


#: The long-running stages: their exit summary can be JSON too (runner.finish).
STAGES = frozenset({"produce", "replay", "live", "quality", "features"})
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
        if name in STAGES:  # their exit summary, for scripts
            add_output_option(p)
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
    p.add_argument("--start", required=True, type=instant, help="first event time; " + _RANGE_HELP)
    p.add_argument("--end", required=True, type=instant, help="end of the range (excluded)")
    p.add_argument(
        "--source", choices=["archive", "topic"], default="archive",
        help="the raw Parquet archive (default) or ticks.valid from its earliest offset",
    )  # fmt: skip

    p = cmd.add(
        "validate", "recompute bars, window features, indicators from the archive; compare a sink",
        "marketpipe validate --start 2024-03-08T14:30:00Z --end 2024-03-08T15:30:00Z",
        cmd_validate, " Exits 1 on any missing, extra or differing row.",
    )  # fmt: skip
    p.add_argument("--start", required=True, type=instant, help="first event time; " + _RANGE_HELP)
    p.add_argument("--end", required=True, type=instant, help="end of the range (excluded)")
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
        "--since", type=instant, metavar="TIME",
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
