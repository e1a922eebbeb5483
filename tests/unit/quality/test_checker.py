"""The checker on whole labelled streams from the synthetic producer, and on fuzz."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe.ingest.faults import GOOD
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.quality.checker import CheckCounts, Checker
from marketpipe.quality.rules import Thresholds
from marketpipe.settings import FaultSettings, ProducerSettings, QualitySettings

NOW = 1_700_000_000_000_000
EXPECTED_REASON = {
    "crossed": {"crossed"},
    "duplicate": {"duplicate"},
    "out_of_order": {"out_of_order"},
    "malformed": {"empty", "invalid_json", "not_object", "missing_field", "wrong_type"},
}


def labelled_stream(n: int, faults: FaultSettings) -> tuple[list[bytes], list[bytes], list[str]]:
    cfg = ProducerSettings(symbol_count=8, tps=0, seed=21, faults=faults)
    producer = SyntheticProducer(cfg, publisher=None, topic="t")  # type: ignore[arg-type]
    keys: list[bytes] = []
    values: list[bytes] = []
    labels: list[str] = []
    for start in range(0, n, 5000):
        times = NOW - 10_000_000 + np.arange(start, start + 5000, dtype=np.int64) * 100
        k, v, lab, _ = producer.encode(producer.market.generate(times))
        keys += k
        values += v
        labels += lab
    return keys, values, labels


def test_every_labelled_message_is_routed_where_it_belongs() -> None:
    faults = FaultSettings(malformed=0.02, crossed=0.02, duplicate=0.02, out_of_order=0.02)
    keys, values, labels = labelled_stream(50_000, faults)
    checker = Checker(Thresholds(QualitySettings()))
    counts = CheckCounts()
    for key, value, label in zip(keys, values, labels, strict=True):
        partition = hash(key) % 3
        verdict = checker.check(partition, key, value, NOW, counts)
        if label == GOOD:
            assert verdict.ok, (label, verdict)
        else:
            assert not verdict.ok
            assert set(verdict.reasons) <= EXPECTED_REASON[label], verdict
            assert set(verdict.reasons) & EXPECTED_REASON[label], verdict
    assert counts.valid == labels.count(GOOD)
    assert counts.valid + counts.dlq == len(values)
    assert counts.gap_ticks == 0  # rejected ticks still advance the sequence: no false gaps


def test_a_lost_tick_is_a_gap_and_the_next_tick_still_passes() -> None:
    keys, values, _ = labelled_stream(5000, FaultSettings())
    checker = Checker(Thresholds(QualitySettings()))
    counts = CheckCounts()
    dropped = next(i for i, k in enumerate(keys) if k == keys[0] and i > 10)
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        if i != dropped:
            assert checker.check(0, key, value, NOW, counts).ok
    assert counts.gap_ticks == 1
    assert counts.gap_ranges == 1


@given(st.binary(max_size=300), st.none() | st.binary(max_size=20))
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash_and_never_pass(value: bytes, key: bytes | None) -> None:
    checker = Checker(Thresholds(QualitySettings()))
    verdict = checker.check(0, key, value, NOW, CheckCounts())
    assert not verdict.ok
    assert verdict.reasons


@given(st.dictionaries(st.text(max_size=12), st.none() | st.integers(-(2**63), 2**63) | st.text()))
def test_arbitrary_objects_never_crash(obj: dict[str, object]) -> None:
    checker = Checker(Thresholds(QualitySettings()))
    verdict = checker.check(0, b"A", orjson.dumps(obj), NOW, CheckCounts())
    assert not verdict.ok
