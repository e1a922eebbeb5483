"""Cold storage: Parquet files, hive-partitioned by date and symbol, on S3 (MinIO) or a folder.

Layout: ``<root>/<dataset>/date=YYYY-MM-DD/symbol=<SYMBOL>/part-<batch>.parquet``, the date
taken (UTC) from the rows' time column and the symbol percent-encoded (``EUR%2FUSD``), which
pyarrow's hive partitioning decodes again. A batch always writes the same object names, so
writing a replayed batch again replaces its files instead of duplicating rows.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from marketpipe.contracts import tick_arrow_schema
from marketpipe.settings import S3Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    path: str
    rows: int


def filesystem(
    cfg: S3Settings | None, root: str, create: bool = True
) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path for ``root``: ``s3://bucket/prefix`` or a local folder
    (created unless ``create`` is false: readers create nothing)."""
    if root.startswith("s3://"):
        if cfg is None:
            raise ValueError("an s3:// root needs S3 settings")
        parsed = urllib.parse.urlparse(cfg.endpoint_url or "")
        fs = pafs.S3FileSystem(
            access_key=cfg.access_key_id,
            secret_key=cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None,
            region=cfg.region,
            endpoint_override=parsed.netloc or None,
            scheme=parsed.scheme or "https",
            connect_timeout=5,
            request_timeout=30,
        )
        return fs, root[len("s3://") :].rstrip("/")
    local = pafs.LocalFileSystem()
    if create:
        local.create_dir(root, recursive=True)
    return local, root.rstrip("/")


def partition_value(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class ParquetSink:
    name = "parquet"

    def __init__(self, root: str, s3: S3Settings | None = None) -> None:
        self.fs, self.base = filesystem(s3, root)
        server = (s3.endpoint_url or "AWS") if s3 is not None else None
        self.endpoint = f"{root} ({server})" if server else root
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def write(
        self, dataset: str, batch: str | int, table: pa.Table, time_column: str
    ) -> list[Written]:
        """Write ``table`` (with a ``symbol`` column) as one file per (date, symbol).

        ``time_column`` holds epoch microseconds or timestamps; dates are UTC.
        """
        if table.num_rows == 0:
            return []
        groups = by_date_and_symbol(table, time_column)
        if len(groups) == 1:
            written = [self._write_file(dataset, batch, *groups[0])]
        else:
            with ThreadPoolExecutor(WRITERS, thread_name_prefix="parquet-write") as pool:
                written = list(pool.map(lambda g: self._write_file(dataset, batch, *g), groups))
        log.debug("%s batch %s: %d files", dataset, batch, len(written))
        return written

    def _write_file(
        self, dataset: str, batch: str | int, key: tuple[str, str], part: pa.Table
    ) -> Written:
        date, symbol = key
        folder = f"{self.base}/{dataset}/date={date}/symbol={partition_value(symbol)}"
        path = f"{folder}/part-{batch}.parquet"
        if self._local:  # object stores need no folders (markers would clutter the console)
            self.fs.create_dir(folder, recursive=True)
            # Readers (the features job streams this folder) must never see half a file:
            # write a hidden temporary, then rename it into place (atomic, and replacing).
            tmp = f"{folder}/.part-{batch}.parquet.tmp"
            pq.write_table(part, tmp, filesystem=self.fs, compression="zstd")
            self.fs.move(tmp, path)
        else:  # an S3 object appears whole or not at all
            pq.write_table(part, path, filesystem=self.fs, compression="zstd")
        return Written(path, part.num_rows)


DAY_US = 86_400_000_000
#: Files a write puts in parallel: a batch writes a file per symbol (50 in the benchmarks), and
#: one after another they cost a round trip each to the object store.
WRITERS = 8


def _date(epoch_us: int) -> str:
    return datetime.fromtimestamp(epoch_us / 1e6, UTC).strftime("%Y-%m-%d")


def by_date_and_symbol(table: pa.Table, time_column: str) -> list[tuple[tuple[str, str], pa.Table]]:
    """``table``'s rows grouped by (UTC date of ``time_column``, ``symbol``), sorted by that
    key, each group without ``symbol`` and in the rows' order. ``time_column`` holds epoch
    microseconds or timestamps (without a zone: UTC). Vectorised: a Python loop per row
    cost the archive more than its Parquet writes."""
    times = table.column(time_column)
    symbols = table.column("symbol")
    if times.null_count or symbols.null_count:
        raise ValueError(f"rows without a symbol or a {time_column} cannot be stored")
    if pa.types.is_timestamp(times.type):
        times = times.cast(pa.timestamp("us")).cast(pa.int64())
    days = np.floor_divide(times.to_numpy(), DAY_US)
    encoded = pc.dictionary_encode(symbols.combine_chunks())
    first_day = int(days.min())
    names = encoded.dictionary.to_pylist()
    codes = (days - first_day) * len(names) + encoded.indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    in_order = codes[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(in_order)) + 1])
    ends = np.append(starts[1:], len(in_order))
    data = table.drop_columns(["symbol"]).take(pa.array(order))
    groups = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        day, symbol = divmod(int(in_order[start]), len(names))
        groups.append(
            ((_date((first_day + day) * DAY_US), names[symbol]), data.slice(start, end - start))
        )
    return sorted(groups, key=lambda g: g[0])


#: The tick contract as Arrow types (what the archive holds; symbol comes from the path).
TICK_ARROW_TYPES: dict[str, pa.DataType] = {f.name: f.type for f in tick_arrow_schema()}
# Partition values are always strings (a symbol like 1234 must not become an integer).
_HIVE = ds.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")


def read_archive(root: str, s3: S3Settings | None, start_us: int, end_us: int) -> pa.Table:
    """Archived valid ticks with ``start_us <= event_time < end_us``, in the tick contract's
    columns (``symbol`` decoded from the partition path). Only the dates in range are listed."""
    fs, base = filesystem(s3 if root.startswith("s3://") else None, root, create=False)
    first, last = _date(start_us), _date(max(start_us, end_us - 1))
    selector = pafs.FileSelector(f"{base}/raw", recursive=True, allow_not_found=True)
    paths = sorted(
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.path.endswith(".parquet")
        and first <= _partition(info.path, "date") <= last
    )
    if not paths:
        return pa.table({name: pa.array([], type) for name, type in TICK_ARROW_TYPES.items()})
    # One schema for every file, the contract's types: files archived before a column joined
    # the contract (say received_at) read as nulls in it.
    schema = pa.unify_schemas([pa.schema(list(TICK_ARROW_TYPES.items())), _HIVE.schema])
    dataset = ds.dataset(
        paths, schema=schema, filesystem=fs, format="parquet", partitioning=_HIVE,
        partition_base_dir=f"{base}/raw",
    )  # fmt: skip
    time = ds.field("event_time")
    return dataset.to_table(filter=(time >= start_us) & (time < end_us)).select(
        list(TICK_ARROW_TYPES)
    )


def _partition(path: str, name: str) -> str:
    for part in path.split("/"):
        if part.startswith(f"{name}="):
            return urllib.parse.unquote(part[len(name) + 1 :])
    return ""


@dataclass(frozen=True)
class ColdDataset:
    name: str
    files: int
    bytes: int
    dates: tuple[str, str]  # first, last date partition
    newest: str  # a path, to show what the layout looks like


def cold_inventory(root: str, s3: S3Settings | None) -> list[ColdDataset]:
    """What the cold store holds, per dataset (raw, bars, window_features, indicators)."""
    fs, base = filesystem(s3 if root.startswith("s3://") else None, root, create=False)
    found: dict[str, list[pafs.FileInfo]] = defaultdict(list)
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            found[info.path[len(base) :].lstrip("/").split("/", 1)[0]].append(info)
    out = []
    for name, infos in sorted(found.items()):
        dates = sorted(_partition(i.path, "date") for i in infos)
        newest = max(infos, key=lambda i: i.mtime_ns or 0)
        out.append(
            ColdDataset(name, len(infos), sum(i.size or 0 for i in infos), (dates[0], dates[-1]),
                        newest.path)
        )  # fmt: skip
    return out
