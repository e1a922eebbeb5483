from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from marketpipe.ingest.timeparse import (
    LocalClock,
    epoch_parser,
    naive_us,
    parse_instant,
    parse_tz,
    text_parser,
)


def us(*args: int, tz: timezone = UTC) -> int:
    return naive_us(datetime(*args, tzinfo=tz).astimezone(UTC).replace(tzinfo=None))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "offset_h"), [("UTC", 0), ("Z", 0), ("-05:00", -5), ("+0530", 5.5)]
)
def test_fixed_zones(name: str, offset_h: float) -> None:
    tz = parse_tz(name)
    assert tz.utcoffset(None) == timedelta(hours=offset_h)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse_tz("Mars/Olympus")


def test_new_york_across_both_dst_switches() -> None:
    clock = LocalClock(parse_tz("America/New_York"))
    # Winter: UTC-5. Summer: UTC-4.
    assert clock.to_utc_us(naive_us(datetime(2024, 1, 15, 9, 30))) == us(2024, 1, 15, 14, 30)
    assert clock.to_utc_us(naive_us(datetime(2024, 7, 15, 9, 30))) == us(2024, 7, 15, 13, 30)
    # Spring forward 2024-03-10 02:00 -> 03:00: 01:59 is EST, 03:00 is EDT.
    assert clock.to_utc_us(naive_us(datetime(2024, 3, 10, 1, 59))) == us(2024, 3, 10, 6, 59)
    assert clock.to_utc_us(naive_us(datetime(2024, 3, 10, 3, 0))) == us(2024, 3, 10, 7, 0)
    # Fall back 2024-11-03: 01:30 happens twice; read as the first (EDT).
    assert clock.to_utc_us(naive_us(datetime(2024, 11, 3, 1, 30))) == us(2024, 11, 3, 5, 30)
    assert clock.to_utc_us(naive_us(datetime(2024, 11, 3, 2, 30))) == us(2024, 11, 3, 7, 30)


@pytest.mark.parametrize(
    ("unit", "text", "expected"),
    [
        ("s", "1700000000", 1_700_000_000_000_000),
        ("s", "1700000000.25", 1_700_000_000_250_000),
        ("ms", "1675329600138", 1_675_329_600_138_000),
        ("us", "1675329600138123", 1_675_329_600_138_123),
        ("ns", "1675329600138123999", 1_675_329_600_138_123),
    ],
)
def test_epoch_units(unit: str, text: str, expected: int) -> None:
    assert epoch_parser(unit)(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", ""])
def test_epoch_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not a finite time|could not convert"):
        epoch_parser("ms")(bad)


def test_histdata_format_in_fixed_est() -> None:
    parse = text_parser("%Y%m%d %H%M%S%f", parse_tz("-05:00"))
    # 3-digit milliseconds: .065 s, read in EST all year (July too, no DST).
    assert parse("20200101 170000065") == us(2020, 1, 1, 22, 0, 0) + 65_000
    assert parse("20200701 170000065") == us(2020, 7, 1, 22, 0, 0) + 65_000


def test_iso_naive_and_aware() -> None:
    parse = text_parser("iso", parse_tz("Europe/London"))
    assert parse("2024-07-01T12:00:00") == us(2024, 7, 1, 11, 0)  # BST
    assert parse("2024-07-01T12:00:00+02:00") == us(2024, 7, 1, 10, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T14:30:00Z", us(2024, 1, 2, 14, 30)),
        ("2024-01-02T14:30:00", us(2024, 1, 2, 14, 30)),
        ("2024-01-02T09:30:00-05:00", us(2024, 1, 2, 14, 30)),
        ("1704205800", us(2024, 1, 2, 14, 30)),
        ("1704205800000", us(2024, 1, 2, 14, 30)),
        ("1704205800000000", us(2024, 1, 2, 14, 30)),
        ("1704205800s", us(2024, 1, 2, 14, 30)),
        ("1704205800000ms", us(2024, 1, 2, 14, 30)),
        ("1704205800000000us", us(2024, 1, 2, 14, 30)),
        ("1704205800000000000ns", us(2024, 1, 2, 14, 30)),
        ("17042058ms", us(1970, 1, 1, 4, 44, 2) + 58_000),  # the unit given wins over size
    ],
)
def test_parse_instant(text: str, expected: int) -> None:
    assert parse_instant(text) == expected
