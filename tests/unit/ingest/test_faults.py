from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from marketpipe.contracts import ContractError, decode_tick
from marketpipe.ingest.faults import (
    CROSSED,
    DUPLICATE,
    GOOD,
    MALFORMED,
    MALFORMED_KINDS,
    OUT_OF_ORDER,
    malformed_payload,
)
from marketpipe.ingest.producer import SyntheticProducer
from marketpipe.ingest.synthetic import TickBatch
from marketpipe.settings import FaultSettings, ProducerSettings

N = 200_000


def encode_all(
    faults: FaultSettings, n: int = N, seed: int = 1
) -> tuple[list[bytes], list[bytes], list[str], list[TickBatch]]:
    cfg = ProducerSettings(symbol_count=20, tps=0, seed=seed, faults=faults)
    producer = SyntheticProducer(cfg, publisher=None, topic="t")  # type: ignore[arg-type]
    keys: list[bytes] = []
    values: list[bytes] = []
    labels: list[str] = []
    batches = []
    for start in range(0, n, 10_000):
        times = np.arange(start, start + 10_000, dtype=np.int64) * 1000 + 1_700_000_000_000_000
        batch = producer.market.generate(times)
        k, v, lab, _ = producer.encode(batch)
        keys += k
        values += v
        labels += lab
        batches.append(batch)
    return keys, values, labels, batches


def test_no_faults_means_every_message_is_a_good_tick() -> None:
    _, values, labels, _ = encode_all(FaultSettings(), n=20_000)
    assert set(labels) == {GOOD}
    assert len(values) == 20_000
    for v in values[:2000]:
        tick = decode_tick(v)
        assert tick.bid < tick.ask


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("malformed", MALFORMED),
        ("crossed", CROSSED),
        ("duplicate", DUPLICATE),
        ("out_of_order", OUT_OF_ORDER),
    ],
)
@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_fraction_is_honoured(field: str, label: str, fraction: float) -> None:
    _, _, labels, _ = encode_all(FaultSettings(**{field: fraction}))
    count = Counter(labels)[label]
    expected = fraction * N
    sd = (N * fraction * (1 - fraction)) ** 0.5
    assert abs(count - expected) < 5 * sd, (count, expected)


def test_mixed_faults_are_labelled_truthfully() -> None:
    faults = FaultSettings(malformed=0.02, crossed=0.03, duplicate=0.02, out_of_order=0.03)
    keys, values, labels, _ = encode_all(faults, n=50_000)
    assert len(keys) == len(values) == len(labels)
    ticks_by_label: Counter[str] = Counter()
    previous: bytes | None = None
    for key, value, label in zip(keys, values, labels, strict=True):
        if label == MALFORMED:
            with pytest.raises(ContractError):
                decode_tick(value)
            continue
        tick = decode_tick(value)
        assert key == tick.symbol.encode()
        if label == CROSSED:
            assert tick.bid > tick.ask
        elif label == DUPLICATE:
            assert value == previous
        else:
            assert tick.bid < tick.ask
        ticks_by_label[label] += 1
        previous = value
    assert ticks_by_label[GOOD] + ticks_by_label[CROSSED] + ticks_by_label[OUT_OF_ORDER] == 50_000


def test_out_of_order_ticks_keep_their_seq_and_move_back_in_time() -> None:
    faults = FaultSettings(out_of_order=0.05, out_of_order_ms=5000)
    _, values, labels, _ = encode_all(faults, n=20_000)
    last_time: dict[str, int] = {}
    last_seq: dict[str, int] = {}
    for value, label in zip(values, labels, strict=True):
        tick = decode_tick(value)
        assert tick.seq == last_seq.get(tick.symbol, 0) + 1
        if label == OUT_OF_ORDER:
            assert tick.event_time <= last_time.get(tick.symbol, tick.event_time) - 4_000_000
        else:
            last_time[tick.symbol] = tick.event_time
        last_seq[tick.symbol] = tick.seq


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_breaks_the_contract(kind: str) -> None:
    _, values, _, _ = encode_all(FaultSettings(), n=10_000)
    rng = np.random.default_rng(0)
    for good in values[:200]:
        with pytest.raises(ContractError):
            decode_tick(malformed_payload(good, kind, rng))
