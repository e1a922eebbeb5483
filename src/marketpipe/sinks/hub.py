"""Every configured feature sink behind one object: the streaming job and the backfill write
through it, so both land the same rows in the same places.

Hot sinks (DuckDB, PostgreSQL) take upserts by key as windows change; the cold store (Parquet
under ``archive_root``) takes raw ticks always and closed feature windows with the ``parquet``
sink. Indicator state, the features query's export progress and the closed windows it
exports to cold storage are read back from the first hot sink.

Every failure leaves as a ``SinkError`` naming the sink and its endpoint, and saying whether it
is transient (worth retrying the micro-batch) or permanent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol, TypeVar

import pyarrow as pa

from marketpipe.settings import FeaturesSettings, PostgresSettings, S3Settings
from marketpipe.sinks.duckdb import DuckDBSink
from marketpipe.sinks.errors import SinkError
from marketpipe.sinks.parquet import ParquetSink, Written
from marketpipe.sinks.postgres import PostgresSink
from marketpipe.sinks.tables import Recorded, TableSpec

T = TypeVar("T")


class Sink(Protocol):
    """Anything written to or read from: a name and an endpoint for its errors."""

    name: str
    endpoint: str


def calling(sink: Sink, call: Callable[[], T]) -> T:
    """``call()`` on ``sink``; any failure raised as a ``SinkError`` naming it."""
    try:
        return call()
    except SinkError:
        raise
    except Exception as exc:
        raise SinkError(sink.name, sink.endpoint, exc) from exc


class FeatureSinks:
    def __init__(
        self,
        cfg: FeaturesSettings,
        postgres: PostgresSettings | None = None,
        s3: S3Settings | None = None,
    ) -> None:
        self.hot: list[DuckDBSink | PostgresSink] = []
        for name in cfg.sinks:
            if name == "duckdb":
                self.hot.append(DuckDBSink(cfg.duckdb_path))
            elif name == "postgres":
                self.hot.append(PostgresSink(postgres or PostgresSettings()))
        root = cfg.archive_root
        self.cold = ParquetSink(root, s3 if root.startswith("s3://") else None) if root else None
        self.cold_features = self.cold is not None and "parquet" in cfg.sinks

    def upsert(self, table: TableSpec, rows: Sequence[Sequence[object]]) -> int:
        """Merge rows into every hot sink; returns the rows merged (the largest count)."""
        if not rows:
            return 0
        return max(calling(sink, partial(sink.upsert, table, rows)) for sink in self.hot)

    def archive(self, name: str, ticks: pa.Table) -> list[Written]:
        """Valid ticks to ``raw/`` (no-op without cold storage)."""
        cold = self.cold
        if cold is None:
            return []
        return calling(cold, partial(cold.write, "raw", name, ticks, "event_time"))

    def closed(self, dataset: str, name: str, rows: pa.Table) -> list[Written]:
        """Closed feature windows to ``<dataset>/`` (no-op without the parquet sink)."""
        cold = self.cold
        if cold is None or not self.cold_features:
            return []
        return calling(cold, partial(cold.write, dataset, name, rows, "window_start"))

    def states_before(self, firsts: Mapping[str, datetime]) -> dict[str, str]:
        first = self.hot[0]
        return calling(first, partial(first.states_before, firsts))

    def rows_ending(
        self, table: TableSpec, after: datetime, upto: datetime, longest: timedelta
    ) -> pa.Table:
        """The first hot sink's rows of windows (at most ``longest`` long) that end in
        ``(after, upto]``."""
        first = self.hot[0]
        return calling(first, partial(first.rows_ending, table, after, upto, longest))

    def progress_before(self, checkpoint: str, batch_id: int) -> Recorded | None:
        """(max_event_us, exported_to_us, closed_to_us) recorded by the latest batch before
        ``batch_id``."""
        first = self.hot[0]
        return calling(first, partial(first.progress_before, checkpoint, batch_id))

    def record_progress(
        self, checkpoint: str, batch_id: int, max_event_us: int, exported_to_us: int,
        closed_to_us: int,
    ) -> None:  # fmt: skip
        first = self.hot[0]
        record = partial(
            first.record_progress, checkpoint, batch_id, max_event_us, exported_to_us,
            closed_to_us,
        )  # fmt: skip
        calling(first, record)

    def close(self) -> None:
        for sink in self.hot:
            sink.close()
        # Spark keeps the foreachBatch closures (and so this object) until the process exits;
        # let the connections go now.
        self.hot.clear()
