from __future__ import annotations

from pathlib import Path

import pytest

from marketpipe.contracts import decode_tick
from marketpipe.ingest.replay import Replayer, ReplayPacer
from marketpipe.runtime import StopFlag
from marketpipe.settings import ReplaySettings
from tests.tickfiles import kibot_rows, write_lines
from tests.unit.ingest.fakes import ListPublisher


def replay(paths: list[Path], **cfg: object) -> tuple[ListPublisher, object]:
    pub = ListPublisher()
    summary = Replayer(ReplaySettings(**cfg), pub, "t").run(paths, StopFlag())  # type: ignore[arg-type]
    return pub, summary


def test_seq_per_symbol_in_file_order_across_files(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "A.txt", kibot_rows(10))
    b = write_lines(tmp_path / "B.txt", kibot_rows(5))
    a2 = write_lines(tmp_path / "A2.txt", kibot_rows(3))
    pub, summary = replay([a, b, a2], symbol=None)
    ticks = [decode_tick(v) for _, v, _ in pub.sent]
    assert [(t.symbol, t.seq) for t in ticks] == (
        [("A", i) for i in range(1, 11)]
        + [("B", i) for i in range(1, 6)]
        + [("A2", i) for i in range(1, 4)]
    )
    assert all(t.source == "replay" for t in ticks)
    assert summary.accounting.balanced  # type: ignore[attr-defined]
    assert {ts for _, _, ts in pub.sent} == {0}  # publish time, not the (old) event time


def test_resume_with_start_at_reproduces_the_same_seqs(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "IBM.txt", kibot_rows(30))
    full, _ = replay([path])
    all_ticks = [decode_tick(v) for _, v, _ in full.sent]
    cut = all_ticks[12].event_time
    resumed, summary = replay([path], start_at=str(cut))
    rest = [decode_tick(v) for _, v, _ in resumed.sent]
    assert rest == [t for t in all_ticks if t.event_time >= cut]
    assert rest[0].seq > 1
    assert summary.accounting.skipped == {"before_start": 12}  # type: ignore[attr-defined]
    assert summary.accounting.balanced  # type: ignore[attr-defined]


def test_symbol_filter_is_accounted(tmp_path: Path) -> None:
    files = [write_lines(tmp_path / f"{s}.txt", kibot_rows(4)) for s in ("A", "B", "C")]
    pub, summary = replay(files, only_symbols="A,C")
    assert {decode_tick(v).symbol for _, v, _ in pub.sent} == {"A", "C"}
    acc = summary.accounting  # type: ignore[attr-defined]
    assert (acc.read, acc.published, acc.skipped["symbol_filter"]) == (12, 8, 4)


def test_a_broken_file_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "A.txt", kibot_rows(5))
    bad = write_lines(tmp_path / "B.csv", ["a,b", "1,2"])
    pub, summary = replay([bad, good], columns="time=a,price=zz")
    assert len(pub.sent) == 5
    assert "column 'zz' not in header" in summary.file_errors[0]  # type: ignore[attr-defined]
    assert not summary.ok  # type: ignore[attr-defined]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_pacer_follows_event_time_scaled_by_speed(speed: float) -> None:
    clock = FakeClock()
    pacer = ReplayPacer(speed, clock=clock, sleep=clock.sleep)
    times = [0, 0, 500_000, 1_000_000, 2_000_000]  # microseconds
    released = []
    for start, end in pacer.ranges(times):
        released.append((clock.now - 100.0, times[start:end]))
    assert released[0] == (0.0, [0, 0])
    for waited, chunk in released:
        assert waited == pytest.approx(chunk[0] / 1e6 / speed, abs=1e-6)
    assert sum(len(c) for _, c in released) == len(times)


def test_pacer_does_not_wait_for_late_ticks_or_at_speed_zero() -> None:
    clock = FakeClock()
    pacer = ReplayPacer(1.0, clock=clock, sleep=clock.sleep)
    list(pacer.ranges([0, 1_000_000]))
    before = clock.now
    assert list(pacer.ranges([500_000])) == [(0, 1)]  # earlier than the high-water mark
    assert clock.now == before
    assert list(ReplayPacer(0).ranges([0, 10**12])) == [(0, 2)]
