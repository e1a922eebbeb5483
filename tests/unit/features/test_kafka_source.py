"""The Python Kafka source's offset planning (no Spark, no broker)."""

from __future__ import annotations

import pytest

from marketpipe.features.kafka_source import cap_offsets


@pytest.mark.parametrize(
    ("lag", "budget"),
    [({"0": 100, "1": 100, "2": 100}, 30), ({"0": 5, "1": 1000}, 100), ({"0": 0, "1": 7}, 3),
     ({"0": 10, "1": 10}, 50), ({"0": 1, "1": 1, "2": 1}, 2)],
)  # fmt: skip
def test_the_offset_budget_is_shared_by_lag(lag: dict[str, int], budget: int) -> None:
    share = cap_offsets(lag, budget)
    assert sum(share.values()) == min(budget, sum(lag.values()))
    assert all(0 <= share[p] <= lag[p] for p in lag)
    total = sum(lag.values())
    if total > budget:  # proportional, give or take the one offset of rounding
        assert all(abs(share[p] - lag[p] * budget / total) <= 1 for p in lag)
