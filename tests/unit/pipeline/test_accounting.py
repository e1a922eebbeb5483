"""The fault tests' accounting must be able to fail: every kind of loss or doubling it claims
to catch is injected here, and told apart from what the broker lost."""

from __future__ import annotations

import hashlib
from collections import Counter

from benchmarks.pipeline import Ledger, account
from benchmarks.pipeline.accounting import identity
from marketpipe.contracts import Tick
from marketpipe.kafka.deadletter import H_SHA256

TICKS = [("tick", "SYM000", "synthetic-0", str(seq)) for seq in range(1, 11)]


def ledger(**changes: object) -> Ledger:
    clean = Ledger(
        raw=Counter(TICKS), valid=Counter(TICKS[:8]), dlq=Counter(TICKS[8:]),
        seen_raw=Counter(TICKS), seen_out=Counter(TICKS), acknowledged=len(TICKS),
        observed=True,
    )  # fmt: skip
    for name, value in changes.items():
        setattr(clean, name, value)
    return clean


def test_a_clean_run_balances() -> None:
    got = account(ledger())
    assert got.ok
    assert (got.raw, got.valid, got.dlq, got.broker_lost_acknowledged) == (10, 8, 2, 0)


def test_a_missing_output_is_marketpipes_loss() -> None:
    got = account(ledger(valid=Counter(TICKS[:7]), seen_out=Counter(TICKS) - Counter([TICKS[7]])))
    assert not got.ok
    assert got.lost == [TICKS[7]]


def test_a_loss_behind_a_transaction_that_never_ended_is_said_so() -> None:
    got = account(ledger(valid=Counter(TICKS[:7]), valid_uncommitted=Counter(TICKS[:8]),
                         seen_out=Counter(TICKS) - Counter([TICKS[7]])))  # fmt: skip
    assert not got.ok
    assert (got.lost, got.uncommitted) == ([TICKS[7]], 1)


def test_an_output_seen_then_gone_is_the_brokers_loss() -> None:
    got = account(ledger(valid=Counter(TICKS[:7])))  # TICKS[7] was seen in an output before
    assert got.ok
    assert got.broker_lost_out == [TICKS[7]]


def test_an_extra_valid_copy_is_a_duplicate() -> None:
    got = account(ledger(valid=Counter(TICKS[:8]) + Counter([TICKS[0]])))
    assert not got.ok
    assert got.duplicated == [TICKS[0]]
    assert got.reprocessed == [TICKS[0]]


def test_valid_and_dlq_for_one_raw_tick_is_processing_it_twice() -> None:
    got = account(ledger(dlq=Counter(TICKS[8:]) + Counter([TICKS[0]])))
    assert not got.ok
    assert got.reprocessed == [TICKS[0]]
    assert not got.duplicated


def test_a_tick_sent_twice_must_come_out_twice() -> None:
    raw = Counter(TICKS) + Counter([TICKS[0]])
    assert account(ledger(raw=raw)).lost == [TICKS[0]]  # one copy short, never seen twice
    assert account(ledger(raw=raw, dlq=Counter(TICKS[8:]) + Counter([TICKS[0]]))).ok


def test_what_the_broker_lost_from_raw_is_counted_apart() -> None:
    raw = Counter(TICKS[:9])  # the broker dropped the last acknowledged one
    got = account(ledger(raw=raw))
    assert got.ok
    assert got.broker_lost_acknowledged == 1
    assert got.broker_lost_raw == 1
    assert got.raw_lost_after_processing == 1  # the checker had passed it on before


def test_a_resent_copy_does_not_hide_a_lost_tick() -> None:
    raw = Counter(TICKS[:9]) + Counter([TICKS[0]])  # one lost, another written twice
    got = account(ledger(raw=raw, dlq=Counter(TICKS[8:]) + Counter([TICKS[0]])))
    assert got.ok
    assert got.broker_lost_acknowledged == 1


def test_without_an_observer_a_broker_loss_is_marketpipes_and_the_summary_says_so() -> None:
    """No observer: nothing was seen, so nothing can be the broker's; the line does not claim
    "0 seen then gone"."""
    got = account(ledger(valid=Counter(TICKS[:7]), seen_raw=Counter(), seen_out=Counter(),
                         observed=False))  # fmt: skip
    assert got.lost == [TICKS[7]]
    assert "not tailed" in got.lines()[1]
    assert "seen then gone" not in got.lines()[1]
    assert "seen then gone" in account(ledger()).lines()[1]


def test_unknown_acks_are_said_so() -> None:
    got = account(ledger(acknowledged=None))
    assert got.broker_lost_acknowledged is None
    assert "unknown" in got.lines()[0]


def test_a_record_is_known_by_its_tick_or_its_sha256_even_cut_short() -> None:
    tick = Tick(symbol="A", event_time=1, seq=3, price=1.0, size=1.0, bid=1.0, ask=1.0,
                bid_size=1.0, ask_size=1.0, source="s")  # fmt: skip
    assert identity(tick.to_json()) == ("tick", "A", "s", "3")
    blob = bytes(range(256)) * 10
    digest = hashlib.sha256(blob).hexdigest()
    assert identity(blob) == ("bytes", digest)
    assert identity(blob[:100], [(H_SHA256, digest.encode())]) == ("bytes", digest)
