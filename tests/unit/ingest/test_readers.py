from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.contracts import TickColumns
from marketpipe.ingest.readers import FileError, ReadOptions, detect_format, read_file
from marketpipe.ingest.replay import read_options
from marketpipe.ingest.rows import Accounting
from marketpipe.settings import ReplaySettings
from tests.tickfiles import kibot_rows, write_lines, write_parquet


def read_all(path: Path, opts: ReadOptions) -> tuple[TickColumns, Accounting, list[int] | None]:
    acc = Accounting()
    out = TickColumns()
    seqs: list[int] = []
    for chunk in read_file(path, opts, acc):
        for name in ("symbol", "event_time", "price", "size", "bid", "ask", "bid_size", "ask_size"):
            getattr(out, name).extend(getattr(chunk.columns, name))
        seqs.extend(chunk.seq or [])
        assert 0 < chunk.done <= chunk.total
    return out, acc, seqs or None


def utc_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)  # type: ignore[misc]


@pytest.mark.parametrize("compress", [False, True])
def test_kibot_file_in_new_york_time(tmp_path: Path, compress: bool) -> None:
    path = write_lines(tmp_path / "IBM.txt", kibot_rows(1000), compress=compress)
    assert detect_format(path) == "kibot"
    cols, acc, _ = read_all(path, ReadOptions(chunk_rows=128))
    assert len(cols) == acc.read == 1000
    assert set(cols.symbol) == {"IBM"}
    # 2024-03-08 09:30:00 New York (EST, UTC-5) = 14:30 UTC; three ticks share each second.
    assert cols.event_time[:4] == [utc_us(2024, 3, 8, 14, 30)] * 3 + [utc_us(2024, 3, 8, 14, 30, 1)]
    assert cols.price[0] == 100.01
    assert cols.bid[0] == 100.0
    assert cols.ask[0] == 100.02
    assert cols.size[0] == 100.0


def test_kibot_bad_rows_are_counted_with_their_lines(tmp_path: Path) -> None:
    lines = kibot_rows(10)
    lines[2] = "03/08/2024,09:30:00,100.00,99.99"  # too few fields
    lines[4] = "13/45/2024,09:30:01,100.00,99.99,100.01,5"  # no such date
    lines[6] = "03/08/2024,25:00:00,100.00,99.99,100.01,5"  # no such time
    lines[8] = "03/08/2024,09:30:02,abc,99.99,100.01,5"
    lines.insert(5, "")  # blank lines are not rows
    path = write_lines(tmp_path / "IBM.txt", lines)
    cols, acc, _ = read_all(path, ReadOptions())
    assert len(cols) == 6
    assert acc.read == 10
    assert acc.rejected == {"columns": 1, "time": 2, "number": 1}
    assert [r.split(":")[0] for r in acc.first_rejects] == [
        f"{path} line 3", f"{path} line 5", f"{path} line 8", f"{path} line 10",
    ]  # fmt: skip


def test_generic_csv_by_header_names(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "t.csv",
        [
            "ts,sym,px,qty,b,a",
            "1700000000000,AAPL,189.5,10,189.4,189.6",
            "1700000000001,MSFT,415,5,414.9,415.1",
        ],
    )
    opts = ReadOptions(
        columns={
            "time": "ts",
            "symbol": "sym",
            "price": "px",
            "size": "qty",
            "bid": "b",
            "ask": "a",
        },
        time_unit="ms",
    )
    cols, _acc, _ = read_all(path, opts)
    assert cols.symbol == ["AAPL", "MSFT"]
    assert cols.event_time == [1_700_000_000_000_000, 1_700_000_000_001_000]
    assert cols.ask == [189.6, 415.1]


def test_own_csv_export_needs_no_mapping_and_infers_the_unit(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ticks.csv",
        ["symbol,event_time,seq,price,size,bid,ask,bid_size,ask_size,source",
         "X,1700000000000001,7,10,1,9.9,10.1,,,feed"],
    )  # fmt: skip
    opts = ReadOptions()
    cols, _acc, seq = read_all(path, opts)
    assert cols.event_time == [1_700_000_000_000_001]
    assert seq == [7]
    assert opts.time_unit == "us"


def test_positions_without_header_and_delimiter(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.txt", ["2024-01-02T14:30:00Z;1.1;1.2", "2024-01-02T14:30:01Z;1.1;1.3"]
    )
    opts = ReadOptions(
        columns={"time": "0", "bid": "1", "ask": "2"},
        delimiter=";",
        time_format="iso",
        symbol="EURUSD",
    )
    cols, _acc, _ = read_all(path, opts)
    assert cols.price == [pytest.approx(1.15), pytest.approx(1.2)]
    assert cols.event_time[0] == utc_us(2024, 1, 2, 14, 30)


def test_presets_match_the_real_formats(tmp_path: Path) -> None:
    ccxt = write_lines(
        tmp_path / "trades.csv",
        [",timestamp,id,type,side,price,amount,cost,date",
         "0,1675329600138,1206419187,,buy,1666.8,26.062,43440.1416,2023-02-02 09:20:00.138+00:00"],
    )  # fmt: skip
    cols, _, _ = read_all(
        ccxt, read_options(ReplaySettings(preset="ccxt-trades", symbol="ETHUSDT"))
    )
    assert (cols.event_time, cols.price, cols.size, cols.bid) == (
        [1_675_329_600_138_000], [1666.8], [26.062], [1666.8],
    )  # fmt: skip
    hist = write_lines(tmp_path / "q.csv", ["20200101 170000065,1.121200,1.121720,0"])
    cols, _, _ = read_all(
        hist, read_options(ReplaySettings(preset="histdata-quotes", symbol="EURUSD"))
    )
    assert cols.event_time == [utc_us(2020, 1, 1, 22, 0) + 65_000]
    assert cols.price == [pytest.approx(1.12146)]
    assert cols.size == [None]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x00\x01\x02\xff\xfe binary", "not a text or Parquet file"),
    ],
)
def test_unusable_files_are_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(FileError, match=message):
        detect_format(path)


def test_missing_file_and_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="no such file"):
        detect_format(tmp_path / "nope.csv")
    path = write_lines(tmp_path / "t.csv", ["a,b", "1,2"])
    with pytest.raises(FileError, match="column 'px' not in header"):
        list(read_file(path, ReadOptions(columns={"time": "a", "price": "px"}), Accounting()))


def test_truncated_gzip_is_a_file_error_after_good_rows(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "IBM.txt.gz", kibot_rows(20_000), compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    chunks = read_file(path, ReadOptions(chunk_rows=1000), Accounting())
    got = len(next(chunks).columns)
    assert got == 1000  # rows before the damage arrive
    with pytest.raises(FileError, match="corrupt after line"):
        list(chunks)


def test_parquet_file_with_nulls_and_timestamps(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "t.parquet",
        {
            "symbol": ["A", "A", "B"],
            "event_time": pa.array(
                [datetime(2024, 1, 2, 14, 30, tzinfo=UTC)] * 3, pa.timestamp("ms", "UTC")
            ),
            "price": [1.0, None, float("nan")],
            "size": [1.0, 1.0, 1.0],
            "bid": [0.9, 0.9, 0.9],
            "ask": [1.1, 1.1, 1.1],
        },
    )
    assert detect_format(path) == "parquet"
    cols, acc, _ = read_all(path, ReadOptions())
    assert cols.event_time == [utc_us(2024, 1, 2, 14, 30)] * 2
    assert cols.price == [1.0, pytest.approx(1.0)]
    assert acc.read == 3
    assert acc.rejected == {"number": 1}  # NaN; the null price became the mid
    assert acc.derived["price_from_mid"] == 1
    assert acc.first_rejects[0].startswith(f"{path} row 3: number")


def test_hive_partitioned_archive_folder(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    for sym in ("A", "B"):
        write_parquet(
            root / "date=2024-01-02" / f"symbol={sym}" / "part-0.parquet",
            {
                "event_time": [1, 2], "seq": [1, 2], "price": [1.0, 1.1], "size": [1.0, None],
                "bid": [0.9, 1.0], "ask": [1.1, 1.2], "bid_size": [None, None],
                "ask_size": [None, None], "source": ["s", "s"],
            },
        )  # fmt: skip
    cols, _acc, seq = read_all(root, ReadOptions())
    assert cols.symbol == ["A", "A", "B", "B"]
    assert seq == [1, 2, 1, 2]
    assert cols.size == [1.0, None, 1.0, None]
