"""The live source against a local server answering like the API, publishing to the real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from marketpipe.contracts import decode_tick
from marketpipe.ingest.live import LiveSource, LiveSummary
from marketpipe.ingest.polygon import PolygonClient
from marketpipe.kafka import Publisher, read_to_end
from marketpipe.retry import Backoff
from marketpipe.settings import LiveSettings, Settings
from tests.apisim import FakeMarketApi, Scripted
from tests.integration.helpers import run_cli

T0 = 1_700_000_000_000_000_000  # ns


@pytest.fixture
def api() -> Iterator[tuple[FakeMarketApi, str]]:
    fake = FakeMarketApi()
    for symbol in ("AAPL", "MSFT"):
        fake.list_symbol(symbol)
    with fake.serve() as url:
        yield fake, url


def live_settings(url: str, **kw: object) -> LiveSettings:
    return LiveSettings(
        base_url=url, api_key=SecretStr("test-key"), symbols=["AAPL", "NOPE", "MSFT"],
        max_requests_per_s=1000, max_retries=1, coverage_interval_s=0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_polls_publish_each_trade_once_and_survive_failures(
    settings: Settings, api: tuple[FakeMarketApi, str]
) -> None:
    fake, url = api
    started_us = time.time_ns() // 1000
    cfg = live_settings(url)
    client = PolygonClient(cfg, backoff=Backoff(0.01, 0.02))
    source = LiveSource(cfg, client, Publisher(settings.kafka), settings.kafka.topic_raw)
    summary = LiveSummary(topic=settings.kafka.topic_raw)

    fake.trade("AAPL", 189.5, 100, seq=1, t_ns=T0)
    fake.quote("AAPL", 189.49, 189.51, t_ns=T0)
    fake.trade("MSFT", 415.0, 5, seq=10, t_ns=T0 + 1000)  # no quote yet: locked at the trade
    source.poll_once(summary)
    source.poll_once(summary)  # nothing new: nothing published
    fake.trade("AAPL", 189.6, 50, seq=4, t_ns=T0 + 2_000_000)
    fake.fail("/last/trade/MSFT", Scripted(503))  # one 5xx: retried, round unaffected
    fake.fail("/last/nbbo/AAPL", Scripted(429, {"Retry-After": "1"}))  # waited out, not a failure
    source.poll_once(summary)
    fake.trade("AAPL", 189.7, 10, seq=9, t_ns=T0 + 3_000_000)
    fake.trade("MSFT", 415.5, 7, seq=12, t_ns=T0 + 3_000_000)
    fake.fail("/last/trade/MSFT", Scripted(503), Scripted(503))  # beyond max_retries: skipped
    source.poll_once(summary)
    source.poll_once(summary)  # MSFT healthy again: its seq 12 arrives now
    summary.delivery = source.publisher.close()

    assert summary.polls == 5
    assert summary.published == 5
    assert summary.unknown_symbols == {"NOPE"}
    assert summary.failures == {"MSFT": 1}
    assert summary.locked_quotes == 2  # both MSFT trades: it never had a quote
    assert summary.delivery.ok
    assert fake.count("/tickers/NOPE") == 1  # unknown symbol cached, not asked every round
    assert client.stats.rate_limited == 1
    assert fake.count("/last/nbbo/AAPL", 429) == 1

    ticks = [decode_tick(m.value()) for m in read_to_end(settings.kafka, settings.kafka.topic_raw)]
    got = sorted((t.symbol, t.seq, t.price, t.event_time) for t in ticks)
    assert got == [
        ("AAPL", 1, 189.5, T0 // 1000),
        ("AAPL", 4, 189.6, (T0 + 2_000_000) // 1000),
        ("AAPL", 9, 189.7, (T0 + 3_000_000) // 1000),
        ("MSFT", 10, 415.0, (T0 + 1000) // 1000),
        ("MSFT", 12, 415.5, (T0 + 3_000_000) // 1000),
    ]
    aapl = next(t for t in ticks if t.symbol == "AAPL")
    assert (aapl.bid, aapl.ask, aapl.source) == (189.49, 189.51, "polygon")
    # Each trade carries when its poll's answer came in (the provider's time is long past).
    ended_us = time.time_ns() // 1000
    assert all(t.received_at and started_us <= t.received_at <= ended_us for t in ticks)


def test_cli_runs_for_a_duration_and_reports(
    settings: Settings, api: tuple[FakeMarketApi, str]
) -> None:
    fake, url = api
    fake.trade("AAPL", 1.0, 1, seq=1, t_ns=T0)
    fake.quote("AAPL", 0.9, 1.1, t_ns=T0)
    env = settings.model_copy(update={"live": live_settings(url, poll_interval_s=0.1)})
    result = run_cli(env, "live", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert "1 trades published" in result.stdout
    assert "unknown symbols (skipped): NOPE" in result.stdout


def test_cli_with_a_wrong_key_is_one_line(
    settings: Settings, api: tuple[FakeMarketApi, str]
) -> None:
    _, url = api
    cfg = live_settings(url).model_copy(update={"api_key": SecretStr("bad")})
    result = run_cli(settings.model_copy(update={"live": cfg}), "live", "--duration", "1")
    assert result.returncode == 2
    assert "API key refused" in result.stderr
    assert "Traceback" not in result.stderr
