"""Per (symbol, source) state of the quality checker, and its changelog.

The state is what the rules need to remember: the highest seq seen and which seqs below it are
still missing (gaps), plus the last valid price and event time. It is written to a compacted
changelog topic in the same transaction as the checker's output and offsets, partition for
partition with the input topic, so after a restart or rebalance the state read back matches
the committed offsets exactly: no false gaps, no duplicates let through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Open gap ranges remembered per symbol; older ones are given up as lost.
MAX_GAP_RANGES = 32


@dataclass(frozen=True)
class SeqObservation:
    duplicate: bool = False
    gap: tuple[int, int] | None = None  # seqs newly found missing, inclusive
    late: bool = False  # filled a gap
    abandoned: int = 0  # missing seqs given up because too many gaps are open


@dataclass(slots=True)
class SymbolState:
    high: int = -1  # highest seq seen; -1 = never seen
    missing: list[list[int]] = field(default_factory=list)  # [lo, hi] ranges below high
    last_price: float | None = None  # of the newest valid tick
    last_time: int | None = None  # newest valid event time

    def observe(self, seq: int) -> SeqObservation:
        """Record ``seq``: new, a gap filler, or a duplicate (seen before)."""
        if seq > self.high:
            gap = None
            abandoned = 0
            if self.high >= 0 and seq > self.high + 1:
                gap = (self.high + 1, seq - 1)
                self.missing.append([gap[0], gap[1]])
                while len(self.missing) > MAX_GAP_RANGES:
                    lo, hi = self.missing.pop(0)
                    abandoned += hi - lo + 1
            self.high = seq
            return SeqObservation(gap=gap, abandoned=abandoned)
        for i, (lo, hi) in enumerate(self.missing):
            if lo <= seq <= hi:
                pieces = [r for r in ([lo, seq - 1], [seq + 1, hi]) if r[0] <= r[1]]
                self.missing[i : i + 1] = pieces
                return SeqObservation(late=True)
        return SeqObservation(duplicate=True)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"h": self.high, "m": self.missing, "p": self.last_price, "t": self.last_time}
        )

    @classmethod
    def from_json(cls, data: bytes) -> SymbolState:
        d: dict[str, Any] = orjson.loads(data)
        return cls(high=d["h"], missing=d["m"], last_price=d["p"], last_time=d["t"])


StateKey = tuple[str, str]  # (symbol, source)


def changelog_key(key: StateKey) -> bytes:
    # Symbols and sources never contain a space (contract pattern), so this is unambiguous.
    return f"{key[0]} {key[1]}".encode()


def parse_changelog_key(raw: bytes) -> StateKey:
    symbol, _, source = raw.decode().partition(" ")
    return symbol, source


class StateStore:
    """States by input partition; a partition's states come and go with its assignment."""

    def __init__(self) -> None:
        self.partitions: dict[int, dict[StateKey, SymbolState]] = {}
        self.dirty: dict[int, set[StateKey]] = {}

    def get(self, partition: int, key: StateKey) -> SymbolState:
        """The state for ``key``, marked as changed (it is about to be)."""
        states = self.partitions.get(partition)
        if states is None:
            states = self.partitions[partition] = {}
        state = states.get(key)
        if state is None:
            state = states[key] = SymbolState()
        dirty = self.dirty.get(partition)
        if dirty is None:
            dirty = self.dirty[partition] = set()
        dirty.add(key)
        return state

    def load(self, partition: int, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Replace a partition's states with the latest changelog record per key."""
        states: dict[StateKey, SymbolState] = {}
        for raw_key, value in records:
            states[parse_changelog_key(raw_key)] = SymbolState.from_json(value)
        self.partitions[partition] = states
        self.dirty.pop(partition, None)
        return len(states)

    def drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        self.dirty.pop(partition, None)

    def take_dirty(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(partition, changelog key, value) for every state touched since the last call."""
        dirty, self.dirty = self.dirty, {}
        for partition, keys in dirty.items():
            states = self.partitions.get(partition, {})
            for key in keys:
                state = states.get(key)
                if state is not None:
                    yield partition, changelog_key(key), state.to_json()
