"""Turning the timestamps found in tick files into epoch microseconds UTC, fast.

Files carry event times as epoch numbers in some unit, ISO 8601 strings, or local wall-clock
text in a vendor format. Naive (zone-less) times are read in the file's time zone: an IANA name
(``America/New_York``), ``UTC``, or a fixed offset (``-05:00``, for sources that ignore daylight
saving). Converting each row through zoneinfo is slow, so the UTC offset is looked up once per
local hour and cached. In the repeated hour when clocks go back, local times are read as the
first occurrence (``fold=0``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TimeUnit = Literal["s", "ms", "us", "ns"]
UNIT_TO_US: dict[str, float] = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}
_EPOCH = datetime(1970, 1, 1)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_tz(name: str) -> tzinfo:
    """An IANA zone, ``UTC``/``Z``, or a fixed offset like ``-05:00``; ValueError otherwise."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    match = _OFFSET.match(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(sign * delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name (America/New_York), UTC, or ±HH:MM"
        ) from None


class LocalClock:
    """Naive local wall-clock microseconds -> epoch microseconds UTC, cached per local hour."""

    HOUR_US = 3_600_000_000

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._offsets: dict[int, int] = {}

    def to_utc_us(self, local_us: int) -> int:
        hour = local_us // self.HOUR_US
        offset = self._offsets.get(hour)
        if offset is None:
            local = _EPOCH + timedelta(microseconds=hour * self.HOUR_US)
            utcoffset = local.replace(tzinfo=self.tz, fold=0).utcoffset() or timedelta(0)
            offset = self._offsets[hour] = utcoffset // timedelta(microseconds=1)
        return local_us - offset


def naive_us(dt: datetime) -> int:
    """Microseconds since 1970-01-01 of a naive datetime, read as is."""
    return (dt - _EPOCH) // timedelta(microseconds=1)


def epoch_parser(unit: TimeUnit) -> Callable[[str], int]:
    """Epoch numbers (integers or decimals) in ``unit`` -> microseconds."""
    scale = UNIT_TO_US[unit]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(f"not a finite time: {text!r}") from None
            return round(number * scale)
        return value * int(scale) if scale >= 1 else value // 1000

    return parse


def text_parser(time_format: str, tz: tzinfo) -> Callable[[str], int]:
    """``iso`` or a strptime format -> microseconds UTC; naive values are read in ``tz``."""
    clock = LocalClock(tz)
    strptime = datetime.strptime

    def parse(text: str) -> int:
        dt = datetime.fromisoformat(text) if time_format == "iso" else strptime(text, time_format)
        if dt.tzinfo is not None:
            return naive_us(dt.astimezone(UTC).replace(tzinfo=None))
        return clock.to_utc_us(naive_us(dt))

    return parse


#: What every command that takes an instant accepts (``parse_instant``).
INSTANT_SYNTAX = (
    "ISO 8601 (2024-03-08T14:30:00Z; UTC unless it has an offset) or epoch with a unit "
    "(1709908200s, 1709908200000ms, ...us, ...ns; a bare number's unit is guessed by its size)"
)


def parse_instant(text: str) -> int:
    """A user-given instant as epoch microseconds: the one parser of every command's time
    options (``INSTANT_SYNTAX``)."""
    text = text.strip()
    epoch = re.fullmatch(r"(\d+(?:\.\d+)?)(s|ms|us|ns)?", text)
    if epoch:
        number, unit = float(epoch.group(1)), epoch.group(2)
        if unit is None:
            digits = len(epoch.group(1).split(".")[0])
            unit = "s" if digits <= 11 else ("ms" if digits <= 14 else "us")
        return round(number * UNIT_TO_US[unit])
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return naive_us(dt.astimezone(UTC).replace(tzinfo=None))
