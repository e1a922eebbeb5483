"""Dead-letter records that always fit: what a stage writes for a record it cannot forward.

The DLQ copy keeps the original key and headers, adds the reasons and the source
topic/partition/offset, and keeps the value whole only while it is at most ``max_value_bytes``.
A larger value is cut to its first ``max_value_bytes`` bytes, with its original size and the
sha256 of the whole value in headers, so the record is identified (and can be matched against
the source topic while it is retained) without ever being too large for the broker itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from marketpipe.topicstats import REASONS_HEADER

#: A record header as confluent-kafka gives and takes it.
Header = tuple[str, str | bytes | None]
#: What ``Message.headers()`` returns.
MessageHeaders = list[Header] | dict[str, str | bytes | None] | None


def as_list(headers: MessageHeaders) -> list[Header]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


H_REASONS = REASONS_HEADER
H_DETAIL = "mp.detail"
H_TOPIC = "mp.source.topic"
H_PARTITION = "mp.source.partition"
H_OFFSET = "mp.source.offset"
H_ORIGINAL_SIZE = "mp.original.size"
H_SHA256 = "mp.sha256"
H_TRUNCATED = "mp.truncated"
H_HEADERS_DROPPED = "mp.headers.dropped"

#: The reason added when the value had to be cut to fit.
TOO_LARGE = "too_large"
#: Detail texts are kept short: they are for a person reading one record.
MAX_DETAIL_BYTES = 2_000


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int


def dead_letter(
    value: bytes | None,
    headers: MessageHeaders,
    reasons: Sequence[str],
    detail: str,
    source: Source,
    max_value_bytes: int,
    keep_headers: bool = True,
) -> tuple[bytes | None, list[Header]]:
    """The DLQ copy of a record: (value, headers), the value cut to ``max_value_bytes``.

    Original headers come first (a reader takes the last of a name, so ours win); when they
    alone exceed ``max_value_bytes`` (or ``keep_headers`` is false) they are dropped and
    counted instead. ``max_value_bytes=0`` keeps no value at all, only its size and digest.
    """
    out_reasons = list(reasons)
    extra: list[Header] = []
    kept = as_list(headers)
    if kept and (not keep_headers or header_bytes(kept) > max_value_bytes):
        extra.append((H_HEADERS_DROPPED, str(len(kept)).encode()))
        kept = []
        if TOO_LARGE not in out_reasons:
            out_reasons.append(TOO_LARGE)
    size = len(value) if value is not None else 0
    if value is not None and size > max_value_bytes:
        if TOO_LARGE not in out_reasons:
            out_reasons.append(TOO_LARGE)
        extra += [
            (H_ORIGINAL_SIZE, str(size).encode()),
            (H_SHA256, hashlib.sha256(value).hexdigest().encode()),
            (H_TRUNCATED, str(max_value_bytes).encode()),
        ]
        value = value[:max_value_bytes]
    return value, [
        *kept,
        (H_REASONS, ",".join(out_reasons).encode()),
        (H_DETAIL, detail.encode()[:MAX_DETAIL_BYTES]),
        (H_TOPIC, source.topic.encode()),
        (H_PARTITION, str(source.partition).encode()),
        (H_OFFSET, str(source.offset).encode()),
        *extra,
    ]


def header_bytes(headers: Sequence[Header]) -> int:
    """Bytes the headers add to a record (names and values; framing ignored)."""
    return sum(len(k) + len(v or b"") for k, v in headers)
