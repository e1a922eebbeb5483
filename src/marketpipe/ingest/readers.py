"""Streaming readers for tick files: kibot-style ticks, generic CSV with a column mapping, Parquet.

Every reader streams: it holds one chunk of rows at a time whatever the file size. Gzip is
recognised by its magic bytes, not its name. A bad row becomes a counted reject with its line
number; a file that cannot be read at all raises FileError with one clear line.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from marketpipe.contracts import TickColumns
from marketpipe.ingest.rows import MAPPABLE, Accounting, RowBuilder, RowError
from marketpipe.ingest.timeparse import (
    LocalClock,
    TimeUnit,
    epoch_parser,
    naive_us,
    parse_tz,
    text_parser,
)

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
KIBOT_LINE = re.compile(r"^\d{2}/\d{2}/\d{4},\d{2}:\d{2}:\d{2}(\.\d+)?,")
KIBOT_TZ = "America/New_York"


class FileError(Exception):
    """A whole file cannot be read; the message is one line naming the file and the cause."""


@dataclass(frozen=True)
class Preset:
    """A named column mapping for a format met in the wild."""

    columns: dict[str, str]
    header: bool
    time_unit: TimeUnit | None = None
    time_format: str | None = None
    tz: str = "UTC"
    note: str = ""


PRESETS: dict[str, Preset] = {
    # ccxt fetch_trades CSV: ",timestamp,id,type,side,price,amount,cost,date" (epoch ms, UTC).
    "ccxt-trades": Preset(
        columns={"time": "timestamp", "price": "price", "size": "amount"},
        header=True,
        time_unit="ms",
        note="trade-only: quote locked at the trade price",
    ),
    # HistData.com ASCII ticks: "YYYYMMDD HHMMSSmmm,bid,ask,volume", EST all year (no DST).
    "histdata-quotes": Preset(
        columns={"time": "0", "bid": "1", "ask": "2"},
        header=False,
        time_format="%Y%m%d %H%M%S%f",
        tz="-05:00",
        note="quote-only: price is the mid, size null; volume column is always 0 and ignored",
    ),
}


@dataclass
class ReadOptions:
    """How to read files; built from ReplaySettings plus CLI options."""

    format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    header: bool | None = None
    delimiter: str = ","
    time_unit: TimeUnit | None = None
    time_format: str | None = None
    tz: str | None = None
    price_scale: float = 1.0
    symbol: str | None = None
    chunk_rows: int = 10_000


@dataclass
class Chunk:
    columns: TickColumns
    seq: list[int] | None
    source: list[str] | None
    done: int  # progress through the file: bytes (text files) or rows (Parquet) ...
    total: int  # ... out of this many


def symbol_from_name(path: Path) -> str:
    """``IBM.txt`` -> ``IBM``; ``ES_ticks.csv.gz`` -> ``ES_ticks``."""
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0] if "." in name else name


def _open_text(path: Path) -> tuple[IO[str], IO[bytes]]:
    """A text stream over the file (gunzipped if needed) and the raw file for positions."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    binary: IO[bytes] = raw
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        binary = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    else:
        raw.seek(0)
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
    return text, raw


def detect_format(path: Path) -> str:
    """``parquet``, ``kibot`` or ``csv``, from the file's first bytes and first line."""
    if not path.exists():
        raise FileError(f"{path}: no such file")
    if path.is_dir():
        if not any(path.rglob("*.parquet")):
            raise FileError(f"{path}: a folder with no .parquet files")
        return "parquet"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic == PARQUET_MAGIC:
            return "parquet"
        text, raw = _open_text(path)
        with raw, text:
            first = text.readline(4096).lstrip("\ufeff")
    except PermissionError:
        raise FileError(f"{path}: permission denied") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise FileError(f"{path}: unreadable ({exc})") from None
    if not first.strip():
        raise FileError(f"{path}: empty file")
    if "\ufffd" in first or "\x00" in first:
        raise FileError(f"{path}: not a text or Parquet file")
    return "kibot" if KIBOT_LINE.match(first) else "csv"


def read_file(path: Path, opts: ReadOptions, accounting: Accounting) -> Iterator[Chunk]:
    """Stream one file (or a Parquet folder) as chunks of converted rows."""
    fmt = detect_format(path) if opts.format == "auto" else opts.format
    if fmt == "parquet":
        yield from _read_parquet(path, opts, accounting)
        return
    try:
        text, raw = _open_text(path)
    except OSError as exc:
        raise FileError(f"{path}: unreadable ({exc})") from None
    with raw, text:
        reader = csv.reader(text, delimiter=opts.delimiter)
        source = _RawFile(raw, path.stat().st_size)
        try:
            if fmt == "kibot":
                yield from _read_kibot(reader, source, path, opts, accounting)
            elif fmt == "csv":
                yield from _read_csv(reader, source, path, opts, accounting)
            else:
                raise FileError(f"{path}: unknown format {fmt!r}")
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FileError(f"{path}: corrupt after line {reader.line_num} ({exc})") from None
        except csv.Error as exc:
            raise FileError(f"{path}: unreadable CSV at line {reader.line_num} ({exc})") from None


@dataclass
class _RawFile:
    """The file under the text stream: its position (compressed bytes for gzip) and size."""

    raw: IO[bytes]
    size: int

    def chunk(self, builder: RowBuilder, rows: int, force: bool = False) -> Chunk | None:
        """A chunk once ``rows`` rows are built (or whatever is left when ``force``)."""
        if len(builder.columns) < rows and not (force and len(builder.columns)):
            return None
        columns, seq, source = builder.take()
        return Chunk(columns, seq, source, self.raw.tell(), self.size)


def kibot_time_parser(tz: tzinfo) -> Callable[[str], int]:
    """``MM/DD/YYYY HH:MM:SS[.ffffff]`` local time -> epoch microseconds UTC."""
    clock = LocalClock(tz)
    days: dict[str, int] = {}

    def parse(text: str) -> int:
        date_s, _, time_s = text.partition(" ")
        day = days.get(date_s)
        if day is None:
            month, dom, year = date_s.split("/")
            day = days[date_s] = naive_us(datetime(int(year), int(month), int(dom)))
        hours, minutes, seconds = time_s.split(":")
        h, m = int(hours), int(minutes)
        sec_us = int(seconds) * 1_000_000 if "." not in seconds else round(float(seconds) * 1e6)
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec_us < 61_000_000):
            raise ValueError("time of day out of range")
        return clock.to_utc_us(day + (h * 3600 + m * 60) * 1_000_000 + sec_us)

    return parse


def _read_kibot(
    reader: Any, raw: _RawFile, path: Path, opts: ReadOptions, acc: Accounting
) -> Iterator[Chunk]:
    """``MM/DD/YYYY,HH:MM:SS,price,bid,ask,size``, no header, US Eastern time by default."""
    symbol = opts.symbol or symbol_from_name(path)
    builder = RowBuilder(
        kibot_time_parser(parse_tz(opts.tz or KIBOT_TZ)), acc, str(path), "line", opts.price_scale
    )
    add, chunk_rows = builder.add, opts.chunk_rows
    for row in reader:
        if len(row) != 6:
            if row:
                builder.reject(
                    reader.line_num, RowError("columns", f"{len(row)} fields, kibot has 6")
                )
            continue
        date_s, time_s, price, bid, ask, size = row
        add(reader.line_num, symbol, f"{date_s} {time_s}", price, size, bid, ask)
        chunk = raw.chunk(builder, chunk_rows)
        if chunk:
            yield chunk
    last = raw.chunk(builder, chunk_rows, force=True)
    if last:
        yield last


def _time_parser(opts: ReadOptions, tz: tzinfo, sample: str) -> Callable[[str], int]:
    """The configured time reading, or one inferred from the first value (and said so)."""
    if opts.time_format:
        return text_parser(opts.time_format, tz)
    if opts.time_unit:
        return epoch_parser(opts.time_unit)
    sample = sample.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", sample):
        digits = len(sample.lstrip("-").split(".")[0])
        unit: TimeUnit = (
            "s" if digits <= 11 else "ms" if digits <= 14 else "us" if digits <= 17 else "ns"
        )
        opts.time_unit = unit
        return epoch_parser(unit)
    opts.time_format = "iso"
    return text_parser("iso", tz)


def _resolve_columns(path: Path, opts: ReadOptions, header: list[str] | None) -> dict[str, int]:
    mapping = dict(opts.columns)
    if not mapping:
        if header is None:
            raise FileError(f"{path}: no header and no --columns mapping")
        names = set(header)
        mapping = {f: f for f in MAPPABLE if f in names and f != "time"}
        if "event_time" in names:
            mapping["time"] = "event_time"
    unknown = sorted(set(mapping) - set(MAPPABLE))
    if unknown:
        raise FileError(f"--columns: unknown fields {unknown}; mappable: {', '.join(MAPPABLE)}")
    if "time" not in mapping:
        raise FileError(f"{path}: no time column mapped (map time=COLUMN)")
    resolved: dict[str, int] = {}
    for name, column in mapping.items():
        if column.isdigit():
            resolved[name] = int(column)
        elif header is None:
            raise FileError(f"{path}: column {column!r} given by name but the file has no header")
        elif column not in header:
            raise FileError(f"{path}: column {column!r} not in header {header}")
        else:
            resolved[name] = header.index(column)
    return resolved


def _read_csv(
    reader: Any, raw: _RawFile, path: Path, opts: ReadOptions, acc: Accounting
) -> Iterator[Chunk]:
    has_header = opts.header
    if has_header is None:
        has_header = not opts.columns or not all(c.isdigit() for c in opts.columns.values())
    header = None
    if has_header:
        first = next(reader, None)
        if first is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in first]
    idx = _resolve_columns(path, opts, header)
    width = max(idx.values()) + 1
    tz = parse_tz(opts.tz or "UTC")
    default_symbol = None if "symbol" in idx else (opts.symbol or symbol_from_name(path))
    builder: RowBuilder | None = None
    chunk_rows = opts.chunk_rows
    # Unmapped fields read index -1, which lands on a None appended to each row.
    ti, si, pi, zi, bi, ai, bzi, azi, qi, sri = (idx.get(f, -1) for f in MAPPABLE)
    for row in reader:
        if not row:
            continue
        if builder is None:
            sample = row[ti] if len(row) > ti else ""
            builder = RowBuilder(
                _time_parser(opts, tz, sample), acc, str(path), "line", opts.price_scale
            )
        if len(row) < width:
            builder.reject(reader.line_num, RowError("columns", f"{len(row)} fields, need {width}"))
            continue
        row.append(None)
        builder.add(
            reader.line_num,
            row[si] if si >= 0 else default_symbol,
            row[ti], row[pi], row[zi], row[bi], row[ai], row[bzi], row[azi], row[qi],
            source=row[sri],
        )  # fmt: skip
        chunk = raw.chunk(builder, chunk_rows)
        if chunk:
            yield chunk
    if builder is not None:
        last = raw.chunk(builder, chunk_rows, force=True)
        if last:
            yield last


def _read_parquet(path: Path, opts: ReadOptions, acc: Accounting) -> Iterator[Chunk]:
    """A Parquet file, or a folder of them with hive partitions (``date=.../symbol=...``)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise FileError("reading Parquet needs pyarrow: pip install pyarrow") from exc
    files = sorted(str(p) for p in path.rglob("*.parquet")) if path.is_dir() else [str(path)]
    try:
        dataset = ds.dataset(
            files, format="parquet", partitioning="hive",
            partition_base_dir=str(path) if path.is_dir() else None,
        )  # fmt: skip
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileError(f"{path}: not readable as Parquet ({exc})") from None
    names = dataset.schema.names
    mapping = dict(opts.columns) or {
        **{f: f for f in MAPPABLE if f in names and f != "time"},
        "time": "event_time",
    }
    missing = sorted(c for c in mapping.values() if c not in names)
    if missing:
        raise FileError(f"{path}: columns {missing} not in Parquet schema {names}")
    time_type = dataset.schema.field(mapping["time"]).type
    tz = parse_tz(opts.tz or "UTC")
    clock = LocalClock(tz)
    if pa.types.is_timestamp(time_type):
        to_us: Callable[[Any], int] = int  # converted below, column-wise
    elif pa.types.is_integer(time_type):
        to_us = epoch_parser(opts.time_unit or "us")
    else:
        to_us = text_parser(opts.time_format or "iso", tz)
    builder = RowBuilder(to_us, acc, str(path), "row", opts.price_scale)
    default_symbol = opts.symbol or symbol_from_name(path)
    row_number = 0
    total = dataset.count_rows()
    try:
        for batch in dataset.to_batches(
            columns=sorted(set(mapping.values())), batch_size=opts.chunk_rows
        ):
            cols: dict[str, list[Any]] = {}
            for fld, column in mapping.items():
                array = batch.column(column)
                if fld == "time" and pa.types.is_timestamp(array.type):
                    if array.type.tz is None:  # naive: wall clock in the given zone
                        local = pc.cast(array.cast(pa.timestamp("us")), pa.int64()).to_pylist()
                        cols[fld] = [None if v is None else clock.to_utc_us(v) for v in local]
                        continue
                    array = pc.cast(array.cast(pa.timestamp("us", "UTC")), pa.int64())
                cols[fld] = array.to_pylist()
            n = batch.num_rows
            symbols = cols.get("symbol") or [default_symbol] * n
            blank: list[Any] = [None] * n
            for i in range(n):
                row_number += 1
                builder.add(
                    row_number,
                    None if symbols[i] is None else str(symbols[i]),
                    cols["time"][i],
                    cols.get("price", blank)[i],
                    cols.get("size", blank)[i],
                    cols.get("bid", blank)[i],
                    cols.get("ask", blank)[i],
                    cols.get("bid_size", blank)[i],
                    cols.get("ask_size", blank)[i],
                    cols["seq"][i] if "seq" in cols else None,
                    source=None if "source" not in cols else cols["source"][i] or "",
                )
            columns, seq, source = builder.take()
            yield Chunk(columns, seq, source, row_number, total)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileError(f"{path}: corrupt Parquet after row {row_number} ({exc})") from None
