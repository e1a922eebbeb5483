"""The whole-run figure of ``bench_e2e``: never more than the runs did."""

from __future__ import annotations

from typing import Any

from benchmarks.bench_e2e import summary, table, whole_run, whole_run_range


def run(ticks: int, drained_s: float | None, drain_limit: float = 60.0) -> dict[str, Any]:
    return {
        "offered": 0, "acknowledged": ticks, "drained_s": drained_s,
        "whole_run_per_s": whole_run(ticks, 45.0, drained_s),
        "whole_run_below_per_s": whole_run(ticks, 45.0, drain_limit),
        "stages": {}, "latency": {}, "processes": {},
    }  # fmt: skip


def test_every_run_drained_gives_the_median() -> None:
    runs = [run(4_500_000, 5.0), run(4_500_000, 15.0), run(4_500_000, 45.0)]
    assert whole_run_range(runs) is None
    assert summary(runs)["whole_run_per_s"] == 75_000  # 4.5M over 60 s


def test_a_run_that_did_not_drain_makes_the_median_a_range() -> None:
    # 90k/s and 45k/s drained; the third is below 4.5M / (45 + 60) s = 42,857/s.
    runs = [run(4_500_000, 5.0), run(4_500_000, 55.0), run(4_500_000, None)]
    assert whole_run_range(runs) == (45_000, 45_000)  # below 42,857 or not: 45k is the median
    assert "| 45,000 (2 of 3 runs drained within the limit) |" in table([summary(runs)])[-1]
    runs = [run(4_500_000, 5.0), run(9_000_000, None), run(9_000_000, None)]
    assert whole_run_range(runs) == (0, 85_714)
    got = summary(runs)
    assert got["whole_run_per_s"] is None
    line = table([got])[-1]
    assert "< 85,714 (1 of 3 runs drained within the limit)" in line
