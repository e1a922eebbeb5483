"""`marketpipe live --mode stream` against a fake provider speaking the real protocols (a
WebSocket feed and the REST history, tests/feedsim.py) and the real broker: through forced
disconnects, duplicates, a pause, a rate-limited history and a restart, every trade the
provider made is on the topic exactly once, in order per symbol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydantic import SecretStr

from marketpipe.contracts import decode_tick
from marketpipe.ingest import stream
from marketpipe.ingest.live import Coverage
from marketpipe.ingest.polygon import PolygonClient
from marketpipe.ingest.resume import resume_points
from marketpipe.ingest.stream import StreamSource
from marketpipe.kafka import Publisher, read_to_end
from marketpipe.runtime import StopFlag
from marketpipe.settings import LiveSettings, Settings
from tests.apisim import FakeMarketApi, Scripted
from tests.feedsim import FakeFeed
from tests.integration.helpers import run_cli

SYMBOLS = ["AAPL", "MSFT", "NVDA"]


@pytest.fixture
def provider() -> Iterator[tuple[FakeFeed, str, str]]:
    api = FakeMarketApi()
    for symbol in SYMBOLS:
        api.list_symbol(symbol)
    feed = FakeFeed(api, SYMBOLS, trades_per_s=300)
    with api.serve() as rest, feed.serve() as ws:
        yield feed, rest, ws


def stream_settings(rest: str, ws: str, **kw: object) -> LiveSettings:
    return LiveSettings(
        mode="stream", base_url=rest, stream_url=ws, api_key=SecretStr("test-key"),
        symbols=SYMBOLS, max_requests_per_s=1000, backoff_initial_s=0.05, backoff_max_s=0.5,
        coverage_interval_s=0, gap_fill_max_s=600, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def run_source(settings: Settings, cfg: LiveSettings, stop: StopFlag) -> StreamSource:
    topic = settings.kafka.topic_raw
    resume = resume_points(settings.kafka, topic, cfg.source, cfg.symbols)
    source = StreamSource(cfg, PolygonClient(cfg), Publisher(settings.kafka), topic, resume)
    source.summary = source.run(stop)  # type: ignore[attr-defined]
    return source


def on_topic(settings: Settings) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {s: [] for s in SYMBOLS}
    for msg in read_to_end(settings.kafka, settings.kafka.topic_raw):
        tick = decode_tick(msg.value())
        seqs[tick.symbol].append(tick.seq)
    return seqs


def made(feed: FakeFeed) -> dict[str, list[int]]:
    return {s: [t["sequence_number"] for t in feed.tape(s)] for s in SYMBOLS}


@contextmanager
def source_running(
    settings: Settings, feed: FakeFeed, cfg: LiveSettings
) -> Iterator[list[StreamSource]]:
    """The source runs in a thread while the block runs; then the market closes, the source
    catches up and stops. Yields a list that holds the source once it has stopped."""
    stop = StopFlag()
    holder: list[StreamSource] = []
    runner = threading.Thread(target=lambda: holder.append(run_source(settings, cfg, stop)))
    runner.start()
    try:
        yield holder
    finally:
        feed.paused.set()  # the market closes
        time.sleep(1.0)
        stop.set("test")
        runner.join(30)


def missed(got: dict[str, list[int]], want: dict[str, list[int]]) -> int:
    return sum(len(set(want[s]) - set(got[s])) for s in SYMBOLS)


def silent_spell(settings: Settings, feed: FakeFeed, cfg: LiveSettings) -> tuple[StreamSource, int]:
    """The feed goes quiet for 2 s with the connection up while trades go on being made;
    returns the source and how many trades were made meanwhile (at least)."""
    with source_running(settings, feed, cfg) as holder:
        time.sleep(1.5)
        feed.muted.set()
        made_before = feed.made
        time.sleep(2.0)
        made_muted = feed.made - made_before
        feed.muted.clear()
        time.sleep(1.0)
    return holder[0], made_muted


@pytest.mark.timeout(120)
@pytest.mark.parametrize("wait_s", [5.0, 0.0], ids=["confirmed", "unconfirmed"])
def test_the_gap_fill_waits_until_the_feed_confirms_the_subscription(
    settings: Settings,
    provider: tuple[FakeFeed, str, str],
    monkeypatch: pytest.MonkeyPatch,
    wait_s: float,
) -> None:
    """A provider starts sending to a connection a moment after it subscribes (here 1 s), and
    confirms the subscription then. A gap-fill before the confirmation misses the trades made
    in between: in neither the history's answer nor the feed."""
    feed, rest, ws = provider
    feed.subscribe_delay_s = 1.0
    monkeypatch.setattr(stream, "SUBSCRIBE_WAIT_S", wait_s)
    with source_running(settings, feed, stream_settings(rest, ws)) as holder:
        time.sleep(2.5)
    got, want = on_topic(settings), made(feed)
    assert holder[0].summary.connects == 1
    if wait_s:
        assert missed(got, want) == 0
        assert all(got[s] == want[s] for s in SYMBOLS)
    else:  # what the wait is for: about a second of trades lost
        assert missed(got, want) > 50


@pytest.mark.timeout(120)
@pytest.mark.parametrize("silence_s", [0.5, 0.0], ids=["checked", "unchecked"])
def test_a_feed_that_goes_silent_is_checked_against_the_history(
    settings: Settings, provider: tuple[FakeFeed, str, str], silence_s: float
) -> None:
    """A provider can drop messages and keep the connection: no reconnect tells the source.
    Checked after ``stream_silence_s`` of silence, the history fills the gap; unchecked (0),
    the trades made meanwhile are missing until some later reconnect."""
    feed, rest, ws = provider
    cfg = stream_settings(rest, ws, stream_silence_s=silence_s)
    source, made_muted = silent_spell(settings, feed, cfg)
    got, want = on_topic(settings), made(feed)
    assert feed.dropped == 0
    assert source.summary.connects == 1
    if silence_s:
        assert missed(got, want) == 0
        assert all(got[s] == want[s] for s in SYMBOLS)
        assert source.summary.silences >= 1
    else:  # what the check is for: every trade made while muted is missing
        assert made_muted > 10
        assert missed(got, want) >= made_muted


@pytest.mark.timeout(180)
def test_every_trade_once_in_order_through_disconnects_duplicates_and_a_restart(
    settings: Settings, provider: tuple[FakeFeed, str, str]
) -> None:
    feed, rest, ws = provider
    started_us = time.time_ns() // 1000
    feed.api.page_size = 40  # the gap-fills page through the history
    feed.duplicate_every = 7  # the provider repeats itself
    cfg = stream_settings(rest, ws)
    first_run_until = time.monotonic() + 12
    stop = StopFlag()
    runner = threading.Thread(target=lambda: run_source(settings, cfg, stop))
    runner.start()
    time.sleep(1.0)
    for i in range(10):  # forced disconnects while trades flow
        time.sleep(0.6)
        feed.drop_all()
        if i == 4:  # a pause with the connection up, then the history rate-limits a while
            feed.paused.set()
            time.sleep(0.5)
            feed.paused.clear()
            feed.api.fail("/v3/trades", *[Scripted(429, {"Retry-After": "0.2"})] * 3)
    while time.monotonic() < first_run_until:
        time.sleep(0.2)
    stop.set("test")
    runner.join(30)
    # Down for a while (trades keep being made), then a restart resumes from the topic.
    time.sleep(1.5)
    stop2 = StopFlag()
    second = threading.Thread(target=lambda: run_source(settings, cfg, stop2))
    second.start()
    time.sleep(4)
    feed.paused.set()  # the market closes: what was made is all there is
    time.sleep(2)
    stop2.set("test")
    second.join(30)

    got, want = on_topic(settings), made(feed)
    assert feed.dropped == 10
    for symbol in SYMBOLS:
        assert len(want[symbol]) > 50, symbol
        assert got[symbol] == want[symbol], (
            f"{symbol}: {len(set(want[symbol]) - set(got[symbol]))} missed, "
            f"{len(got[symbol]) - len(set(got[symbol]))} duplicated"
        )
    # Receipt time: on every trade, streamed or gap-filled, after it happened, during the test.
    ended_us = time.time_ns() // 1000
    ticks = [decode_tick(m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]
    late = [t for t in ticks if not (t.received_at and started_us <= t.received_at <= ended_us)]
    assert not late, late[:3]
    assert all(t.event_time <= (t.received_at or 0) for t in ticks)


@pytest.mark.timeout(120)
def test_the_coverage_check_reads_100_percent_against_the_fake_provider(
    settings: Settings, provider: tuple[FakeFeed, str, str]
) -> None:
    """Through a disconnect and repeated trades, the share of the tape seen, checked against
    the provider's minute bars once the minutes have closed, is all of it."""
    feed, rest, ws = provider
    feed.duplicate_every = 5
    cfg = stream_settings(rest, ws)
    topic = settings.kafka.topic_raw
    source = StreamSource(cfg, PolygonClient(cfg), Publisher(settings.kafka), topic, {})
    source.coverage = Coverage(clock=lambda: time.time() + 120)  # the minutes have closed
    stop = StopFlag()
    runner = threading.Thread(target=lambda: source.run(stop))
    runner.start()
    time.sleep(1.5)
    feed.drop_all()
    time.sleep(1.5)
    feed.paused.set()
    time.sleep(1.0)
    stop.set("test")
    runner.join(30)
    assert source.coverage.check(PolygonClient(cfg)) == dict.fromkeys(SYMBOLS, 1.0)


def test_the_cli_runs_the_stream_and_says_how_much_of_the_tape_it_saw(
    settings: Settings, provider: tuple[FakeFeed, str, str]
) -> None:
    _, rest, ws = provider
    env = settings.model_copy(update={"live": stream_settings(rest, ws)})
    done = run_cli(env, "live", "--mode", "stream", "--duration", "3", "--output", "json",
                   timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["published"] > 100
    assert summary["connects"] == 1
    assert summary["delivery"]["ok"] is True
