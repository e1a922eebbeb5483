"""What every benchmark shares: an own broker on its own core, this process on another, and
the medians-and-ratios report. Figures are medians of several runs; ratios travel better.

Every benchmark also takes ``--smoke`` (one tiny run: its code paths work, its figures mean
nothing; ``make test`` runs each so) and ``--running-services`` (use the services that
``marketpipe local up`` started, or that the MARKETPIPE_* variables name, instead of starting
its own: nothing is pinned, and everything it creates has a name of its own)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from marketpipe.local.stack import LocalStack
from marketpipe.settings import (
    KafkaSettings,
    LocalSettings,
    PostgresSettings,
    Settings,
    load_settings,
    settings_with_env,
)

#: What ``--smoke`` sets unless a script asks for other values.
SMOKE = {"runs": 1, "count": 2_000}
#: Spark properties of smoke runs: a driver JVM that lives seconds spends about half the CPU
#: with the C1 compiler alone (measured here: ~8 s instead of ~14 s for start-up and a query).
SMOKE_SPARK_CONF = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


@dataclass(frozen=True)
class Bench:
    settings: Settings  # pointing at the benchmark's own services
    folder: Path  # scratch space, removed afterwards

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka


def unique(prefix: str) -> str:
    """A topic, group or table name no earlier run (or other benchmark) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def parser(description: str, runs: int = 5, count: int | None = 300_000) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before ``parse``."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--runs", type=int, default=runs)
    if count is not None:
        out.add_argument("--count", type=int, default=count)
    out.add_argument(
        "--smoke", action="store_true",
        help="one tiny run checking the code paths (make test runs it); figures mean nothing",
    )  # fmt: skip
    out.add_argument(
        "--running-services", action="store_true",
        help="use the running services (marketpipe local up, or MARKETPIPE_* variables) "
        "instead of starting own ones; nothing is pinned",
    )  # fmt: skip
    return out


def add_spark_conf(options: argparse.ArgumentParser) -> None:
    options.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE",
        help="extra Spark property for the job (repeatable), e.g. "
        "spark.sql.streaming.minBatchesToRetain=20",
    )  # fmt: skip


def spark_conf(args: argparse.Namespace) -> dict[str, str]:
    """The ``--spark-conf`` properties, on top of ``SMOKE_SPARK_CONF`` in a smoke run."""
    given = dict(item.split("=", 1) for item in args.spark_conf)
    return {**SMOKE_SPARK_CONF, **given} if args.smoke else given


def parse(options: argparse.ArgumentParser, **smoke: Any) -> argparse.Namespace:
    """Parsed options; with ``--smoke``, ``SMOKE`` and then ``smoke`` override what was given."""
    args = options.parse_args()
    if args.smoke:
        for name, value in {**SMOKE, **smoke}.items():
            if hasattr(args, name):
                setattr(args, name, value)
    return args


def arguments(description: str) -> argparse.Namespace:
    return parse(parser(description))


def stack(
    args: argparse.Namespace, services: list[str], pin_self: bool = True
) -> contextlib.AbstractContextManager[Bench]:
    """The services the options ask for: the running ones, or a fresh stack of ``services``."""
    if args.running_services:
        return running_services()
    return own_stack(services, pin_self)


@contextlib.contextmanager
def running_services() -> Iterator[Bench]:
    """Settings as ``marketpipe`` commands load them (so the running local stack, or the
    services the MARKETPIPE_* variables name) and a scratch folder."""
    folder = Path(tempfile.mkdtemp(prefix="marketpipe-bench-"))
    try:
        yield Bench(load_settings(env_file=None), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_stack(services: list[str], pin_self: bool = True) -> Iterator[Bench]:
    """Fresh local services pinned to the last CPU, with this process pinned to the first
    (``pin_self``). Spark benchmarks leave this process unpinned: its JVM and Python workers
    inherit the pinning, and local[2] on one core would measure half the machine."""
    folder = Path(tempfile.mkdtemp(prefix="marketpipe-bench-"))
    folder.chmod(0o755)
    base = Settings(_env_file=None, local=LocalSettings(data_dir=folder, services=services))  # type: ignore[call-arg]
    stack = LocalStack(base)
    try:
        statuses = stack.up()
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: unpinned
            cpus = sorted(os.sched_getaffinity(0))
            for status in statuses:
                if status.pid and len(cpus) > 1:
                    os.sched_setaffinity(status.pid, {cpus[-1]})
            if pin_self:
                os.sched_setaffinity(0, {cpus[0]})
        yield Bench(settings_with_env(base, stack.endpoint_env()), folder)
    finally:
        stack.down()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(cfg: PostgresSettings) -> Iterator[PostgresSettings]:
    """A database of its own on ``cfg``'s server, dropped afterwards: a benchmark never
    truncates or migrates the tables of a stack someone uses."""
    name = unique("bench").replace("-", "_")
    with psycopg.connect(cfg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield cfg.model_copy(update={"database": name})
    finally:
        with psycopg.connect(cfg.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def report(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    for label, value in rows:
        print(f"{label:<48}{value:>14}")
