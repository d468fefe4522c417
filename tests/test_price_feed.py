"""The reference price feed against a local CoinGecko ``/simple/price`` stand-in: shape,
errors by kind, a last-good cache with its age, stale values refused. No sleeps: a fake clock
ages the cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dexpilot.errors import ApiError, NetworkError, is_retryable
from dexpilot.market.price_feed import PriceFeed, StalePrice
from tests.fakes.price_feed_server import FakePriceFeed

NOW = 1_767_225_600.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def feed(price_feed: FakePriceFeed, clock: Clock) -> Iterator[PriceFeed]:
    price_feed.set_price("ethereum", 3000.1, updated_at=int(NOW) - 20)
    price_feed.set_price("usd-coin", 0.9998, updated_at=int(NOW) - 30)
    price_feed.set_price("bitcoin", 97_000.0)
    with PriceFeed(price_feed.url, timeout_s=0.5, max_age_s=120, clock=clock,
                   api_key="cg-demo-key") as client:
        yield client


def test_fresh_prices_come_from_one_request_in_the_documented_shape(
    feed: PriceFeed, price_feed: FakePriceFeed,
) -> None:
    got = feed.prices(["WETH", "USDC", "WBTC"])
    assert (got["WETH"].price, got["WETH"].source, got["WETH"].age_s) == (3000.1, "coingecko",
                                                                        20.0)
    assert (got["USDC"].price, got["USDC"].age_s) == (0.9998, 30.0)
    assert (got["WBTC"].price, got["WBTC"].age_s) == (97_000.0, 0.0)  # no last_updated_at
    [request] = price_feed.requests
    assert request.path == "/api/v3/simple/price"
    assert request.params["ids"] == "bitcoin,ethereum,usd-coin"
    assert request.params["vs_currencies"] == "usd"
    assert request.params["include_last_updated_at"] == "true"
    assert request.headers["x-cg-demo-api-key"] == "cg-demo-key"
    assert "cg-demo-key" not in request.path + str(request.params)


def test_prices_in_a_quote_token_are_whole_quote_per_whole_token(feed: PriceFeed) -> None:
    prices = feed.prices_in("USDC", ["WETH", "WBTC"])
    assert prices["USDC"] == 1.0
    assert prices["WETH"] == pytest.approx(3000.1 / 0.9998)
    assert prices["WBTC"] == pytest.approx(97_000.0 / 0.9998)


def test_429_is_a_network_error_with_retry_after_and_the_cache_answers(
    feed: PriceFeed, price_feed: FakePriceFeed, clock: Clock,
) -> None:
    feed.prices(["WETH"])
    price_feed.fail_next("429", retry_after="7")
    with pytest.raises(NetworkError) as caught:
        feed.fetch(["WETH"])
    assert caught.value.retry_after == 7.0 and is_retryable(caught.value)
    clock.now += 50
    price_feed.fail_next("429")
    cached = feed.price("WETH")
    assert (cached.price, cached.source, cached.age_s) == (3000.1, "cache", 70.0)


@pytest.mark.parametrize(("mode", "error"), [
    ("slow", NetworkError), ("5xx", NetworkError), ("garbage", ApiError),
    ("shape", ApiError), ("empty", ApiError),
])
def test_failures_have_their_kind_and_fall_back_to_a_fresh_enough_cache(
    feed: PriceFeed, price_feed: FakePriceFeed, clock: Clock, mode: str,
    error: type[Exception],
) -> None:
    price_feed.fail_next(mode)
    with pytest.raises(error):
        feed.fetch(["WETH"])
    feed.prices(["WETH", "USDC"])  # a good answer fills the cache
    clock.now += 60
    price_feed.fail_next(mode)
    got = feed.prices(["WETH", "USDC"])
    assert {s: (p.source, p.age_s) for s, p in got.items()} == {
        "WETH": ("cache", 80.0), "USDC": ("cache", 90.0)}


def test_a_stale_cache_is_refused(
    feed: PriceFeed, price_feed: FakePriceFeed, clock: Clock,
) -> None:
    feed.prices(["WETH"])
    clock.now += 101  # 121 s after the feed's last update: over the 120 s limit
    with price_feed.failing("5xx"), pytest.raises(StalePrice, match="121 s old") as caught:
        feed.price("WETH")
    assert caught.value.age_s == 121.0
    assert isinstance(caught.value.__cause__, NetworkError)
    # The feed recovers with a new value: fresh again.
    price_feed.set_price("ethereum", 3100.0, updated_at=int(clock.now) - 5)
    assert (feed.price("WETH").source, feed.price("WETH").age_s) == ("coingecko", 5.0)


def test_nothing_cached_and_a_failing_feed_is_refused(
    feed: PriceFeed, price_feed: FakePriceFeed,
) -> None:
    price_feed.fail_next("garbage")
    with pytest.raises(StalePrice, match="no earlier price of WETH") as caught:
        feed.price("WETH")
    assert isinstance(caught.value.__cause__, ApiError)


def test_an_old_value_from_a_working_feed_is_refused(
    feed: PriceFeed, price_feed: FakePriceFeed,
) -> None:
    price_feed.set_price("ethereum", 3000.1, updated_at=int(NOW) - 600)
    with pytest.raises(StalePrice, match="last updated 600 s ago"):
        feed.fetch(["WETH"])


def test_unknown_symbols_and_ids_the_feed_does_not_know(
    feed: PriceFeed, price_feed: FakePriceFeed, clock: Clock,
) -> None:
    with pytest.raises(ApiError, match="no feed id configured for 'PEPE'"):
        feed.fetch(["PEPE"])
    with PriceFeed(price_feed.url, {"UNI": "uniswap"}, clock=clock) as other:
        with pytest.raises(ApiError, match="no entry for 'uniswap'"):
            other.fetch(["UNI"])
        price_feed.set_price("uniswap", 9.5)
        assert other.price("UNI").price == 9.5
    assert feed.requests == 0  # an unknown symbol never reaches the network


def test_an_unreachable_feed_is_a_network_error(clock: Clock) -> None:
    with PriceFeed("http://127.0.0.1:9/api/v3", clock=clock, timeout_s=0.5) as dead, \
            pytest.raises(NetworkError):
        dead.fetch(["WETH"])
