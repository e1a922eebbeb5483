"""Recovery times from lag samples: a stage is back once it has worked off the backlog it
faced when the fault cleared."""

from __future__ import annotations

from benchmarks.pipeline.lag import LagSample, caught_up_after, producing_again_after, progress


def test_progress_ignores_positions_past_a_truncated_end() -> None:
    assert progress({0: 10, 1: 5}, {0: 4, 1: 7}) == (11, 6, 15)


def test_caught_up_once_the_backlog_at_the_fault_is_worked_off() -> None:
    samples = [
        LagSample(0.0, 100, {"checker": (50, 50, 100)}),
        LagSample(1.0, None),  # broker down
        LagSample(10.0, 150, {"checker": (50, 100, 150)}),  # the fault cleared at 10
        LagSample(12.0, 170, {"checker": (120, 50, 170)}),
        LagSample(15.0, 190, {"checker": (155, 35, 190)}),  # past 150: the backlog is done
    ]
    assert caught_up_after(samples, "checker", 10.0) == 5.0
    assert caught_up_after(samples, "checker", 16.0) is None  # no sample after: unknown
    assert caught_up_after(samples[:4], "checker", 10.0) is None  # never got there
    assert producing_again_after(samples, 10.0) == 2.0
