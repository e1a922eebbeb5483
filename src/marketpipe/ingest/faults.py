"""Deliberately bad records for exercising the quality checker.

Each fraction is relative to the number of good ticks generated:
- ``crossed``: the tick's quote is crossed (bid above ask). The tick keeps its seq: it is a real
  tick whose content is wrong.
- ``out_of_order``: the tick's event time is pushed ``out_of_order_ms`` into the past; it keeps
  its seq.
  ``crossed`` and ``out_of_order`` never hit the same tick.
- ``duplicate``: the tick is sent a second time, byte for byte, right after itself.
- ``malformed``: an extra message that is not a valid tick (truncated or non-JSON bytes, a missing
  field, a wrong type, a NaN, an empty value) is inserted before the tick. It consumes no seq.

Every emitted message carries a label, so tests and the demo know exactly what was injected.
"""

from __future__ import annotations

import numpy as np
import orjson

from marketpipe.ingest.synthetic import TickBatch
from marketpipe.settings import FaultSettings

GOOD = "good"
CROSSED = "crossed"
OUT_OF_ORDER = "out_of_order"
DUPLICATE = "duplicate"
MALFORMED = "malformed"

MALFORMED_KINDS = ("truncated", "not_json", "missing_field", "wrong_type", "nan", "empty")


def corrupt_columns(batch: TickBatch, cfg: FaultSettings, rng: np.random.Generator) -> np.ndarray:
    """Make some ticks crossed or out of order in place; return each tick's label."""
    n = len(batch)
    labels = np.full(n, GOOD, dtype=object)
    if not (cfg.crossed or cfg.out_of_order):
        return labels
    draw = rng.random(n)
    crossed = draw < cfg.crossed
    late = (draw >= cfg.crossed) & (draw < cfg.crossed + cfg.out_of_order)
    if crossed.any():
        # Swap bid and ask and widen by the original spread: unmistakably crossed.
        bid, ask = batch.bid[crossed], batch.ask[crossed]
        batch.bid[crossed] = ask + (ask - bid)
        batch.ask[crossed] = bid
        labels[crossed] = CROSSED
    if late.any():
        batch.event_time[late] -= int(cfg.out_of_order_ms * 1000)
        labels[late] = OUT_OF_ORDER
    return labels


def malformed_payload(good: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """A broken variant of a good message."""
    if kind == "truncated":
        return good[: int(rng.integers(1, max(2, len(good) - 1)))]
    if kind == "not_json":
        return rng.bytes(int(rng.integers(1, 64)))
    if kind == "empty":
        return b""
    record = orjson.loads(good)
    if kind == "missing_field":
        record.pop("price")
    elif kind == "wrong_type":
        record["price"] = str(record["price"])
    elif kind == "nan":
        return orjson.dumps(record).replace(
            b'"price":' + orjson.dumps(record["price"]), b'"price":NaN'
        )
    return orjson.dumps(record)


def interleave(
    keys: list[bytes],
    values: list[bytes],
    labels: np.ndarray,
    stamps: list[int],
    cfg: FaultSettings,
    rng: np.random.Generator,
) -> tuple[list[bytes], list[bytes], list[str], list[int]]:
    """Insert malformed messages and duplicates around the encoded ticks (parallel lists)."""
    n = len(values)
    label_list: list[str] = labels.tolist()
    if not (cfg.malformed or cfg.duplicate):
        return keys, values, label_list, stamps
    bad_before = rng.random(n) < cfg.malformed
    dup_after = rng.random(n) < cfg.duplicate
    if not (bad_before.any() or dup_after.any()):
        return keys, values, label_list, stamps
    kinds = rng.integers(0, len(MALFORMED_KINDS), n)
    out_k: list[bytes] = []
    out_v: list[bytes] = []
    out_l: list[str] = []
    out_t: list[int] = []
    for i in range(n):
        key, value, stamp = keys[i], values[i], stamps[i]
        if bad_before[i]:
            out_k.append(key)
            out_v.append(malformed_payload(value, MALFORMED_KINDS[kinds[i]], rng))
            out_l.append(MALFORMED)
            out_t.append(stamp)
        out_k.append(key)
        out_v.append(value)
        out_l.append(label_list[i])
        out_t.append(stamp)
        if dup_after[i]:
            out_k.append(key)
            out_v.append(value)
            out_l.append(DUPLICATE)
            out_t.append(stamp)
    return out_k, out_v, out_l, out_t
