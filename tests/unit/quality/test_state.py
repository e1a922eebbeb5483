from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketpipe.quality.state import (
    MAX_GAP_RANGES,
    StateStore,
    SymbolState,
    changelog_key,
    parse_changelog_key,
)


def test_in_order_sequence_has_no_gaps_or_duplicates() -> None:
    state = SymbolState()
    for seq in range(1, 100):
        seen = state.observe(seq)
        assert not seen.duplicate
        assert seen.gap is None
    assert state.high == 99
    assert state.missing == []


def test_gap_is_reported_once_and_late_arrivals_fill_it() -> None:
    state = SymbolState()
    state.observe(1)
    seen = state.observe(5)
    assert seen.gap == (2, 4)
    assert state.observe(3).late
    assert state.missing == [[2, 2], [4, 4]]
    assert state.observe(2).late
    assert state.observe(4).late
    assert state.missing == []
    assert state.observe(3).duplicate  # filled once, now seen


def test_first_tick_of_a_stream_is_never_a_gap() -> None:
    assert SymbolState().observe(31_415).gap is None


def test_open_gaps_are_bounded() -> None:
    state = SymbolState()
    seq = 0
    abandoned = 0
    for _ in range(MAX_GAP_RANGES + 5):
        seq += 3  # leaves two missing each time
        abandoned += state.observe(seq).abandoned
    assert len(state.missing) == MAX_GAP_RANGES
    assert abandoned == 2 * 4  # the first tick is not a gap; four ranges of two given up


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=300))
def test_duplicates_are_exactly_the_repeats(seqs: list[int]) -> None:
    state = SymbolState()
    seen: set[int] = set()
    first: int | None = None
    for seq in seqs:
        obs = state.observe(seq)
        if obs.abandoned:
            return  # beyond the bound, forgotten gaps make late ticks look like duplicates
        first = seq if first is None else first
        # Below the stream's first seq nothing was ever missing: that is a duplicate too.
        assert obs.duplicate == (seq in seen or seq < first), (seq, sorted(seen))
        seen.add(seq)


def test_state_round_trips_through_the_changelog() -> None:
    state = SymbolState(high=10, missing=[[3, 4]], last_price=101.5, last_time=123)
    assert SymbolState.from_json(state.to_json()) == state
    key = ("BRK.B", "replay")
    assert parse_changelog_key(changelog_key(key)) == key


def test_store_tracks_dirty_states_per_partition() -> None:
    store = StateStore()
    store.get(0, ("A", "s")).observe(1)
    store.get(1, ("B", "s")).observe(7)
    dirty = sorted(store.take_dirty())
    assert [(p, k) for p, k, _ in dirty] == [(0, b"A s"), (1, b"B s")]
    assert list(store.take_dirty()) == []
    store.load(0, [(b"A s", SymbolState(high=42).to_json())])
    assert store.get(0, ("A", "s")).high == 42
    store.drop(1)
    assert store.get(1, ("B", "s")).high == -1
