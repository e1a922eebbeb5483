"""Parquet cold storage on a local folder; the S3 variant runs in tests/integration/sinks."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from marketpipe.contracts import TICK_FIELDS, Tick
from marketpipe.ingest.readers import ReadOptions, read_file
from marketpipe.ingest.rows import Accounting
from marketpipe.sinks.parquet import ParquetSink, by_date_and_symbol, read_archive

DAY = 86_400_000_000
T0 = 1_709_908_200_000_000  # 2024-03-08 14:30 UTC


def ticks_table(rows: list[Tick]) -> pa.Table:
    return pa.table({f: [getattr(t, f) for t in rows] for f in TICK_FIELDS})


def tick(symbol: str, seq: int, t: int) -> Tick:
    return Tick(symbol=symbol, event_time=t, seq=seq, price=1.0 + seq, size=None, bid=0.5,
                ask=1.5 + seq, bid_size=None, ask_size=2.0, source="synthetic")  # fmt: skip


def archive_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_partitions_by_date_and_symbol_and_overwrites_a_replayed_batch(tmp_path: Path) -> None:
    rows = [tick("AAPL", 1, T0), tick("EUR/USD", 1, T0), tick("AAPL", 2, T0 + DAY)]
    sink = ParquetSink(str(tmp_path))
    written = sink.write("raw", 7, ticks_table(rows), "event_time")
    assert [w.rows for w in written] == [1, 1, 1]
    sink.write("raw", 7, ticks_table(rows), "event_time")  # the same batch again
    assert archive_files(tmp_path) == [
        "raw/date=2024-03-08/symbol=AAPL/part-7.parquet",
        "raw/date=2024-03-08/symbol=EUR%2FUSD/part-7.parquet",
        "raw/date=2024-03-09/symbol=AAPL/part-7.parquet",
    ]


def test_the_replay_loader_reads_the_archive_back_identically(tmp_path: Path) -> None:
    rows = [tick(s, q, T0 + q * 1000) for s in ("AAPL", "EUR/USD") for q in range(1, 6)]
    sink = ParquetSink(str(tmp_path))
    sink.write("raw", 0, ticks_table(rows[:4]), "event_time")
    sink.write("raw", 1, ticks_table(rows[4:]), "event_time")
    acc = Accounting()
    back = []
    for chunk in read_file(tmp_path / "raw", ReadOptions(), acc):
        cols, seqs, sources = chunk.columns, chunk.seq or [], chunk.source or []
        for i in range(len(cols)):
            skip = ("seq", "source", "received_at")  # a replay's ticks have no receipt time
            fields = {f: getattr(cols, f)[i] for f in TICK_FIELDS if f not in skip}
            back.append(Tick(**fields, seq=seqs[i], source=sources[i]))
    key = lambda t: (t.symbol, t.seq)  # noqa: E731
    assert sorted(back, key=key) == sorted(rows, key=key)
    assert acc.rejected == {}


def test_files_archived_before_the_receipt_time_read_back_with_it_null(tmp_path: Path) -> None:
    """An archive mixes files written before received_at joined the contract with newer ones
    (an old one listed first): both read back, the older ones with nulls."""
    old = [tick("AAPL", 1, T0), tick("AAPL", 2, T0 + 1)]
    new = [msgspec.structs.replace(tick("AAPL", 3, T0 + 2), received_at=T0 + 500)]
    sink = ParquetSink(str(tmp_path))
    sink.write("raw", 1, ticks_table(old).drop_columns(["received_at"]), "event_time")
    sink.write("raw", 2, ticks_table(new), "event_time")
    back = read_archive(str(tmp_path), None, T0, T0 + 10)
    assert back.column_names == list(TICK_FIELDS)
    assert back.schema.field("received_at").type == pa.int64()
    got = sorted(zip(back.column("seq").to_pylist(), back.column("received_at").to_pylist(),
                     strict=True))  # fmt: skip
    assert got == [(1, None), (2, None), (3, T0 + 500)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("as_timestamps", [False, True])
def test_grouping_by_date_and_symbol_matches_a_row_by_row_grouping(
    seed: int, as_timestamps: bool
) -> None:
    rng = random.Random(seed)
    symbols = ["AAPL", "EUR/USD", "a/b/c", "MSFT", "Ω"]
    n = rng.randint(1, 400)
    times = [T0 - DAY + rng.randrange(3 * DAY) for _ in range(n)]
    table = pa.table({
        "symbol": [rng.choice(symbols) for _ in range(n)],
        "t": pa.array(times, pa.timestamp("us", tz="UTC") if as_timestamps else pa.int64()),
        "i": list(range(n)),
    })  # fmt: skip
    expected: dict[tuple[str, str], list[int]] = {}
    for i, (symbol, t) in enumerate(zip(table.column("symbol").to_pylist(), times, strict=True)):
        date = datetime.fromtimestamp(t / 1e6, UTC).strftime("%Y-%m-%d")
        expected.setdefault((date, symbol), []).append(i)
    got = by_date_and_symbol(table, "t")
    assert [key for key, _ in got] == sorted(expected)
    for key, part in got:
        assert part.column_names == ["t", "i"]
        assert part.column("i").to_pylist() == expected[key]  # the rows' own order


def test_rows_without_a_time_are_refused_in_one_line() -> None:
    table = pa.table({"symbol": ["A", "B"], "t": pa.array([T0, None], pa.int64())})
    with pytest.raises(ValueError, match="rows without a symbol or a t cannot be stored"):
        by_date_and_symbol(table, "t")
