"""The REST client against a local server that answers like the API (tests/apisim.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from marketpipe.ingest.polygon import ApiUnavailable, AuthError, NotFound, PolygonClient
from marketpipe.retry import Backoff
from marketpipe.settings import LiveSettings
from tests.apisim import FakeMarketApi, Scripted


@pytest.fixture
def api() -> Iterator[tuple[FakeMarketApi, str]]:
    fake = FakeMarketApi()
    fake.list_symbol("AAPL")
    fake.trade("AAPL", 189.5, 100, seq=7, t_ns=1_700_000_000_123_456_789)
    fake.quote("AAPL", 189.49, 189.51, t_ns=1_700_000_000_200_000_000)
    with fake.serve() as url:
        yield fake, url


def client(url: str, key: str = "test-key", **kw: object) -> PolygonClient:
    cfg = LiveSettings(base_url=url, api_key=SecretStr(key), max_requests_per_s=1000, **kw)  # type: ignore[arg-type]
    return PolygonClient(cfg, backoff=Backoff(0.01, 0.05))


def test_last_trade_and_quote(api: tuple[FakeMarketApi, str]) -> None:
    _, url = api
    c = client(url)
    trade = c.last_trade("AAPL")
    assert trade is not None
    assert (trade.price, trade.size, trade.sequence, trade.sip_ns) == (
        189.5, 100.0, 7, 1_700_000_000_123_456_789,
    )  # fmt: skip
    quote = c.last_quote("AAPL")
    assert quote is not None
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (189.49, 189.51, 3.0, 5.0)


def test_server_errors_are_retried_with_backoff(api: tuple[FakeMarketApi, str]) -> None:
    fake, url = api
    fake.fail("/last/trade", Scripted(503), Scripted(500), Scripted(502))
    c = client(url)
    assert c.last_trade("AAPL") is not None
    assert fake.count("/last/trade") == 4
    assert c.stats.retries == 3


def test_giving_up_after_max_retries(api: tuple[FakeMarketApi, str]) -> None:
    fake, url = api
    fake.fail("/last/trade", *[Scripted(503)] * 10)
    c = client(url, max_retries=2)
    with pytest.raises(ApiUnavailable, match=r"HTTP 503 .* after 3 tries"):
        c.last_trade("AAPL")
    assert fake.count("/last/trade") == 3


def test_429_waits_for_retry_after_without_using_retries(api: tuple[FakeMarketApi, str]) -> None:
    fake, url = api
    fake.fail(
        "/last/nbbo", Scripted(429, {"Retry-After": "1"}), Scripted(429, {"Retry-After": "0"})
    )
    slept: list[float] = []
    c = client(url, max_retries=0)
    c._limiter._sleep = slept.append  # record the hold-off instead of sleeping
    assert c.last_quote("AAPL") is not None
    assert c.stats.rate_limited == 2
    assert c.stats.retries == 0
    assert any(s > 0.9 for s in slept)


def test_unknown_symbol_is_not_found_without_retries(api: tuple[FakeMarketApi, str]) -> None:
    fake, url = api
    with pytest.raises(NotFound):
        client(url).ticker_details("NOPE")
    assert fake.count("/tickers/NOPE") == 1


def test_wrong_key_is_an_auth_error(api: tuple[FakeMarketApi, str]) -> None:
    _, url = api
    with pytest.raises(AuthError, match=r"API key refused .*401"):
        client(url, key="wrong").last_trade("AAPL")
    with pytest.raises(AuthError, match="MARKETPIPE_LIVE__API_KEY"):
        PolygonClient(LiveSettings(base_url=url))


def test_unreachable_api_gives_up_cleanly() -> None:
    from marketpipe.local.process import free_port

    c = client(f"http://127.0.0.1:{free_port()}", max_retries=1)
    with pytest.raises(ApiUnavailable, match="after 2 tries"):
        c.last_trade("AAPL")


def test_key_is_sent_as_header_not_in_the_url(api: tuple[FakeMarketApi, str]) -> None:
    fake, url = api
    client(url).last_trade("AAPL")
    assert all("test-key" not in path for path, _ in fake.log)
