"""The features job's outputs checked after a run: every closed window equal to the validator's
independent recomputation, no key twice in any hot table or cold dataset, and every valid tick
archived exactly once."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import pyarrow.dataset as ds
from psycopg import sql

from benchmarks.pipeline.accounting import EXAMPLES, Identity
from marketpipe.settings import Settings
from marketpipe.sinks.parquet import filesystem, read_archive
from marketpipe.sinks.tables import BARS, FEATURE_TABLES, INDICATORS, WINDOW_FEATURES, TableSpec

VERDICT = re.compile(r"^verdict: (.*)$", re.M)


@dataclass
class SinkReport:
    validate_ok: bool = False
    validate_lines: list[str] = field(default_factory=list)
    #: table -> rows whose key another row has too (hot PostgreSQL tables, cold datasets)
    duplicate_keys: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    archived: int = 0
    not_archived: list[Identity] = field(default_factory=list)
    archived_twice: list[Identity] = field(default_factory=list)
    #: Archived ticks the valid topic no longer holds (the broker lost them after the job read).
    archived_not_in_valid: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.validate_ok
            and not any(self.duplicate_keys.values())
            and not self.not_archived
            and not self.archived_twice
        )

    def lines(self) -> list[str]:
        dups = ", ".join(f"{t} {n}" for t, n in sorted(self.duplicate_keys.items()))
        rows = ", ".join(f"{t} {n:,}" for t, n in sorted(self.rows.items()))
        out = [
            f"validate: {'OK' if self.validate_ok else 'FAILED'}",
            *[f"  {line}" for line in self.validate_lines],
            f"rows: {rows}",
            f"rows sharing a key: {dups}",
            f"archive: {self.archived:,} ticks; valid but not archived {len(self.not_archived):,},"
            f" archived twice {len(self.archived_twice):,}, archived but gone from the valid "
            f"topic (broker) {self.archived_not_in_valid:,}",
        ]
        out += [f"  not archived: {i}" for i in self.not_archived[:EXAMPLES]]
        out += [f"  archived twice: {i}" for i in self.archived_twice[:EXAMPLES]]
        return out


def hot_duplicates(settings: Settings, report: SinkReport) -> None:
    with psycopg.connect(settings.postgres.conninfo(), connect_timeout=10) as conn:
        for table in FEATURE_TABLES:
            key = sql.SQL(", ").join(map(sql.Identifier, table.key))
            n, distinct = conn.execute(
                sql.SQL("SELECT count(*), count(DISTINCT ({})) FROM {}").format(
                    key, sql.Identifier(table.name)
                )
            ).fetchone() or (0, 0)
            report.rows[table.name] = n
            report.duplicate_keys[table.name] = n - distinct


def cold_duplicates(settings: Settings, report: SinkReport) -> None:
    """Closed windows exported to cold Parquet: each key once (a replayed micro-batch rewrites
    its file instead of adding another)."""
    root = settings.features.archive_root
    fs, base = filesystem(settings.s3 if root.startswith("s3://") else None, root)
    for table in (BARS, WINDOW_FEATURES, INDICATORS):
        keys = _cold_keys(fs, f"{base}/{table.name}", table)
        report.rows[f"cold {table.name}"] = sum(keys.values())
        report.duplicate_keys[f"cold {table.name}"] = sum(n for n in keys.values() if n > 1)


def _cold_keys(fs: object, path: str, table: TableSpec) -> Counter[tuple[object, ...]]:
    try:
        data = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
        columns = [c for c in table.key if c in data.schema.names]
        rows = data.to_table(columns=columns).to_pylist()
    except (FileNotFoundError, OSError):
        return Counter()
    return Counter(tuple(r[c] for c in columns) for r in rows)


def archive_once(
    settings: Settings, valid: Counter[Identity], start_us: int, end_us: int, report: SinkReport
) -> None:
    table = read_archive(settings.features.archive_root, settings.s3, start_us, end_us)
    archived: Counter[Identity] = Counter(
        ("tick", s, src, str(q))
        for s, src, q in zip(
            table.column("symbol").to_pylist(),
            table.column("source").to_pylist(),
            table.column("seq").to_pylist(),
            strict=True,
        )
    )
    report.archived = sum(archived.values())
    report.not_archived = sorted(i for i in valid if i not in archived)
    report.archived_twice = sorted(i for i, n in archived.items() if n > 1)
    report.archived_not_in_valid = sum(1 for i in archived if i not in valid)


def parse_validate(stdout: str, returncode: int) -> tuple[bool, list[str]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    match = VERDICT.search(stdout)
    return returncode == 0 and match is not None and match.group(1).startswith("OK"), lines
