"""The stream source's connect sequence against a scripted feed: a refused key ends it; it
waits for the subscription to be confirmed before the gap-fill, and what the feed sent meanwhile
is published after the history, once, in order."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from marketpipe.contracts import decode_tick
from marketpipe.ingest.polygon import AuthError, ClientStats, Trade
from marketpipe.ingest.stream import StreamSource
from marketpipe.runtime import StopFlag
from marketpipe.settings import LiveSettings
from tests.unit.ingest.fakes import ListPublisher, ScriptedFeed

NOW_MS = time.time_ns() // 1_000_000


def trade(seq: int) -> dict[str, object]:
    return {"ev": "T", "sym": "A", "p": 10.0 + seq, "s": 1, "t": NOW_MS + seq, "q": seq,
            "i": str(seq)}  # fmt: skip


def status(status: str, message: str = "") -> dict[str, object]:
    return {"ev": "status", "status": status, "message": message}


class History:
    """The REST history: the trades before the one the feed sends while subscribing."""

    def __init__(self, seqs: list[int], feed: ScriptedFeed) -> None:
        self.trades = [Trade("A", 10.0 + s, 1.0, (NOW_MS + s) * 1_000_000, s, str(s)) for s in seqs]
        self.feed = feed
        self.frames_unread: list[int] = []  # the feed's, when each request came
        self.stats = ClientStats()

    def trades_since(self, symbol: str, from_ns: int) -> list[Trade]:
        self.frames_unread.append(len(self.feed.frames))
        return list(self.trades)


CFG = LiveSettings(mode="stream", stream_url="ws://feed", api_key=SecretStr("k"), symbols=["A"],
                   coverage_interval_s=0)  # fmt: skip


def feed_of(frames: list[list[dict[str, object]]], stop: StopFlag) -> ScriptedFeed:
    return ScriptedFeed([json.dumps(f) for f in frames], at_end=lambda: stop.set("test"))


def source(feed: ScriptedFeed, history: History, publisher: ListPublisher) -> StreamSource:
    return StreamSource(CFG, history, publisher, "raw", {}, connect=lambda url: feed)  # type: ignore[arg-type]


def test_a_trade_sent_before_the_confirmation_is_published_after_the_history_once() -> None:
    stop = StopFlag()
    feed = feed_of([
        [status("connected")],
        [status("auth_success")],
        [trade(5)],  # the feed sends before it confirms: held
        [trade(4), status("success", "subscribed to: T.A, Q.A")],  # both channels at once
        [trade(6)],
    ], stop)  # fmt: skip
    history = History([3, 4], feed)  # one trade behind the feed
    publisher = ListPublisher()
    summary = source(feed, history, publisher).run(stop)
    assert [decode_tick(v).seq for _, v, _ in publisher.sent] == [3, 4, 5, 6]
    assert history.frames_unread == [1]  # asked once both channels were confirmed, no later
    assert summary.from_history == 2
    assert summary.duplicates == 1  # trade 4: from the history, and again from the feed
    assert json.loads(feed.sent[1]) == {"action": "subscribe", "params": "T.A,Q.A"}


def test_a_refused_key_stops_the_source_before_it_subscribes() -> None:
    stop = StopFlag()
    feed = feed_of([[status("connected")], [status("auth_failed")]], stop)
    history = History([3], feed)
    with pytest.raises(AuthError, match="API key refused by ws://feed"):
        source(feed, history, ListPublisher()).run(stop)
    assert [json.loads(m)["action"] for m in feed.sent] == ["auth"]
    assert history.frames_unread == []
