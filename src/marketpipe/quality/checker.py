"""One message in, one verdict out: the rules applied in order with the symbol's state."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from marketpipe.quality.rules import (
    DUPLICATE,
    Thresholds,
    check_market,
    check_schema,
    check_time,
)
from marketpipe.quality.state import StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()
    detail: str = ""


OK = Verdict(True)


@dataclass
class CheckCounts:
    valid: int = 0
    dlq: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    gap_ticks: int = 0
    gap_ranges: int = 0
    late: int = 0
    abandoned: int = 0

    def merge(self, other: CheckCounts) -> None:
        self.valid += other.valid
        self.dlq += other.dlq
        self.reasons.update(other.reasons)
        self.gap_ticks += other.gap_ticks
        self.gap_ranges += other.gap_ranges
        self.late += other.late
        self.abandoned += other.abandoned


class Checker:
    def __init__(self, thresholds: Thresholds, store: StateStore | None = None) -> None:
        self.th = thresholds
        self.store = store or StateStore()

    def check(
        self,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        now_us: int,
        counts: CheckCounts,
    ) -> Verdict:
        tick, error = check_schema(value, key, self.th)
        if error is not None:
            return self._reject(counts, (error.reason,), error.detail)
        assert tick is not None
        symbol, source, seq = tick.symbol, tick.source, tick.seq
        state = self.store.get(partition, (symbol, source))
        seen = state.observe(seq)
        if seen.duplicate:
            return self._reject(
                counts,
                (DUPLICATE,),
                f"{symbol}/{source} seq {seq} already seen (high {state.high})",
            )
        if seen.gap is not None:
            lo, hi = seen.gap
            counts.gap_ticks += hi - lo + 1
            counts.gap_ranges += 1
            log.warning("%s/%s: sequence gap, missing seq %d..%d", symbol, source, lo, hi)
        if seen.late:
            counts.late += 1
        counts.abandoned += seen.abandoned
        market = check_market(tick, state.last_price, self.th)
        timing = check_time(tick, state.last_time, now_us, self.th)
        if market or timing:
            reasons = market + timing
            detail = (
                f"{symbol}/{source} seq {seq}: price={tick.price} size={tick.size} "
                f"bid={tick.bid} ask={tick.ask} event_time={tick.event_time} "
                f"last_price={state.last_price} last_time={state.last_time} now={now_us}"
            )
            return self._reject(counts, reasons, detail)
        state.last_price = tick.price
        if state.last_time is None or tick.event_time > state.last_time:
            state.last_time = tick.event_time
        counts.valid += 1
        return OK

    @staticmethod
    def _reject(counts: CheckCounts, reasons: tuple[str, ...], detail: str) -> Verdict:
        counts.dlq += 1
        counts.reasons.update(reasons)
        return Verdict(False, reasons, detail)
