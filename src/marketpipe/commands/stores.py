"""The stores: ``db migrate``, ``latest``, ``cold``, ``smoke``, ``dashboard``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from marketpipe.commands.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from marketpipe.commands.options import DASHBOARD
from marketpipe.output import emit, wants_json
from marketpipe.settings import ConfigError, HotSink, Settings, env_name

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
