"""Dead-letter records: whole while small, cut (with size and digest) when large."""

from __future__ import annotations

import hashlib

from confluent_kafka import KafkaError, KafkaException

from marketpipe.kafka.deadletter import (
    H_HEADERS_DROPPED,
    H_ORIGINAL_SIZE,
    H_REASONS,
    H_SHA256,
    H_TRUNCATED,
    Source,
    dead_letter,
)
from marketpipe.kafka.publisher import is_fatal, is_permanent, kafka_error

SRC = Source("ticks.raw", 3, 42)


def test_a_value_within_the_cap_is_kept_whole_with_its_provenance() -> None:
    value, headers = dead_letter(b"x" * 100, [("trace", b"1")], ["crossed"], "d", SRC, 100)
    assert value == b"x" * 100
    h = dict(headers)
    assert headers[0] == ("trace", b"1")  # original headers first
    assert h[H_REASONS] == b"crossed"
    assert (h["mp.source.topic"], h["mp.source.partition"], h["mp.source.offset"]) == (
        b"ticks.raw", b"3", b"42",
    )  # fmt: skip
    assert H_SHA256 not in h
    assert H_TRUNCATED not in h


def test_a_value_over_the_cap_is_cut_and_identified() -> None:
    original = bytes(range(256)) * 40
    value, headers = dead_letter(original, None, ["invalid_json"], "d", SRC, 1000)
    h = dict(headers)
    assert value == original[:1000]
    assert h[H_SHA256].decode() == hashlib.sha256(original).hexdigest()
    assert int(h[H_ORIGINAL_SIZE]) == len(original)
    assert int(h[H_TRUNCATED]) == 1000
    assert h[H_REASONS] == b"invalid_json,too_large"


def test_oversized_headers_are_dropped_and_counted_so_the_copy_still_fits() -> None:
    big = [("a", b"x" * 600), ("b", b"y" * 600)]
    _value, headers = dead_letter(b"v", big, ["too_large"], "d" * 5000, SRC, 1000)
    h = dict(headers)
    assert "a" not in h
    assert h[H_HEADERS_DROPPED] == b"2"
    assert h[H_REASONS] == b"too_large"  # not repeated
    assert sum(len(k) + len(v or b"") for k, v in headers) < 2_500  # detail is capped too


def test_delivery_errors_are_told_apart() -> None:
    assert is_permanent(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert is_permanent(KafkaError(KafkaError.INVALID_TIMESTAMP))
    # about a topic, not a record: retried until give-up, never pinned on one record
    assert not is_permanent(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not is_permanent(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert not is_permanent(KafkaError(KafkaError._PURGE_QUEUE))
    assert is_fatal(KafkaError(KafkaError._FATAL))
    assert is_fatal(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True))
    assert not is_fatal(KafkaError(KafkaError._TRANSPORT))


def test_the_kafka_error_behind_a_system_error_is_found() -> None:
    err = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True)
    outer = SystemError("returned a result with an exception set")
    outer.__cause__ = KafkaException(err)
    assert kafka_error(outer) == err
    assert kafka_error(SystemError("no cause")) is None
