"""Reference prices from an HTTP price API in the shape of CoinGecko's ``/simple/price``.

``GET {base_url}/simple/price?ids=ethereum,usd-coin&vs_currencies=usd&include_last_updated_at=true``
answers ``{"ethereum": {"usd": 3000.1, "last_updated_at": 1767225600}, ...}``. dexpilot token
symbols map to feed ids by configuration (``DEFAULT_FEED_IDS``: WETH -> ethereum, ...).

Errors follow the taxonomy: no answer, a timeout, HTTP 429 (with ``Retry-After`` as
``NetworkError.retry_after``) or 5xx -> ``NetworkError``; an answer that is not the documented
shape (not JSON, not an object, a non-positive or non-numeric price, an asked-for id missing)
-> ``ApiError``. Every good answer is cached per symbol with its time; when the feed fails the
cached value is served with its age and ``source="cache"`` if it is younger than
``max_age_s``, otherwise ``StalePrice`` (an ``ApiError``) is raised, chained to the feed's
error: a stale reference price is refused, never used.

Prices are floats in whole units of ``vs_currency`` per whole token (for valuation and checks,
never amounts); ``prices_in(quote)`` re-expresses them per whole quote token, which is what
``dexpilot.market.reference.reference_for`` takes as its ``feed`` source.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dexpilot.config import redact_url
from dexpilot.errors import ApiError, NetworkError

DEFAULT_FEED_IDS: Mapping[str, str] = {
    "WETH": "ethereum",
    "ETH": "ethereum",
    "WBTC": "bitcoin",
    "USDC": "usd-coin",
    "USDT": "tether",
    "DAI": "dai",
    "UNI": "uniswap",
}
SIMPLE_PRICE_PATH = "/simple/price"


@dataclass(frozen=True, slots=True)
class ReferencePrice:
    symbol: str
    price: float  # whole vs_currency per whole token
    vs_currency: str
    as_of: float  # unix seconds: the feed's last_updated_at, else when it was fetched
    age_s: float  # seconds between as_of and the moment this was handed out
    source: str  # the feed's name for a fresh answer, "cache" for a cached one


class StalePrice(ApiError):
    """The feed failed and the last good value is older than the allowed age (or missing)."""

    def __init__(self, message: str, *, age_s: float | None = None) -> None:
        super().__init__(message)
        self.age_s = age_s


class PriceFeed:
    """A ``/simple/price`` client with a last-good cache.

    ``clock`` gives unix seconds (tests pass a controllable one; nothing here sleeps).
    ``api_key``/``api_key_header``: CoinGecko's demo key goes in ``x-cg-demo-api-key``, the
    pro key in ``x-cg-pro-api-key``; it is sent as a header, never in the URL.
    """

    def __init__(
        self,
        base_url: str,
        ids: Mapping[str, str] | None = None,
        *,
        vs_currency: str = "usd",
        timeout_s: float = 5.0,
        max_age_s: float = 120.0,
        name: str = "coingecko",
        api_key: str | None = None,
        api_key_header: str = "x-cg-demo-api-key",
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0 or max_age_s < 0:
            raise ValueError("price feed: timeout_s must be > 0 and max_age_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.ids = dict(ids if ids is not None else DEFAULT_FEED_IDS)
        self.vs_currency = vs_currency.lower()
        self.max_age_s = max_age_s
        self.name = name
        self.clock = clock
        headers = {"Accept": "application/json"}
        if api_key:
            headers[api_key_header] = api_key
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)
        self._cache: dict[str, tuple[float, float]] = {}  # symbol -> (price, as_of)
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PriceFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ---------------------------------------------------------------------------
    def fetch(self, symbols: Iterable[str]) -> dict[str, ReferencePrice]:
        """Ask the feed now (one request for every symbol); errors propagate, the cache is
        updated with every good answer."""
        wanted = self._feed_ids(symbols)
        answer = self._get(sorted(set(wanted.values())))
        now = self.clock()
        out: dict[str, ReferencePrice] = {}
        parsed: dict[str, tuple[float, float]] = {}
        for symbol, feed_id in wanted.items():
            price, as_of = _parse_entry(answer, feed_id, self.vs_currency, now, self._shown)
            age = max(0.0, now - as_of)
            if age > self.max_age_s:  # the feed answers, but its own value is old
                raise StalePrice(f"price feed {self.name}: {feed_id} was last updated "
                                 f"{age:.0f} s ago, more than the allowed {self.max_age_s:.0f} s",
                                 age_s=age)
            parsed[symbol] = (price, as_of)
            out[symbol] = ReferencePrice(symbol, price, self.vs_currency, as_of, age, self.name)
        with self._lock:  # only a fully good answer reaches the cache
            self._cache.update(parsed)
        return out

    def prices(self, symbols: Iterable[str]) -> dict[str, ReferencePrice]:
        """Fresh prices if the feed answers, else cached ones younger than ``max_age_s``;
        ``StalePrice`` if any symbol has neither (chained to the feed's error)."""
        symbols = list(dict.fromkeys(symbols))
        try:
            return self.fetch(symbols)
        except (NetworkError, ApiError) as exc:
            return self._from_cache(symbols, exc)

    def price(self, symbol: str) -> ReferencePrice:
        return self.prices([symbol])[symbol]

    def prices_in(self, quote: str, symbols: Iterable[str]) -> dict[str, float]:
        """Whole ``quote`` tokens per whole token (``quote`` itself is 1.0), e.g. for
        the reference price's ``feed`` source with the quote token USDC."""
        symbols = list(dict.fromkeys([*symbols, quote]))
        got = self.prices(symbols)
        quote_price = got[quote].price
        return {s: (1.0 if s == quote else got[s].price / quote_price) for s in symbols}

    def cached(self, symbol: str) -> ReferencePrice | None:
        """The last good value of ``symbol`` with its current age, whatever that age."""
        with self._lock:
            entry = self._cache.get(symbol)
        if entry is None:
            return None
        price, as_of = entry
        return ReferencePrice(symbol, price, self.vs_currency, as_of,
                              max(0.0, self.clock() - as_of), "cache")

    # -- internals -------------------------------------------------------------------------
    @property
    def _shown(self) -> str:
        return redact_url(self.base_url)

    def _feed_ids(self, symbols: Iterable[str]) -> dict[str, str]:
        wanted: dict[str, str] = {}
        for symbol in symbols:
            feed_id = self.ids.get(symbol)
            if feed_id is None:
                raise ApiError(f"price feed {self.name}: no feed id configured for {symbol!r}")
            wanted[symbol] = feed_id
        if not wanted:
            raise ValueError("price feed: ask for at least one symbol")
        return wanted

    def _from_cache(self, symbols: list[str], cause: Exception) -> dict[str, ReferencePrice]:
        out: dict[str, ReferencePrice] = {}
        for symbol in symbols:
            cached = self.cached(symbol)
            if cached is None:
                raise StalePrice(f"price feed {self.name} failed ({cause}) and no earlier "
                                 f"price of {symbol} is cached") from cause
            if cached.age_s > self.max_age_s:
                raise StalePrice(
                    f"price feed {self.name} failed ({cause}); the cached price of {symbol} is "
                    f"{cached.age_s:.0f} s old, more than the allowed {self.max_age_s:.0f} s",
                    age_s=cached.age_s,
                ) from cause
            out[symbol] = cached
        return out

    def _get(self, feed_ids: list[str]) -> Any:
        url = self.base_url + SIMPLE_PRICE_PATH
        params = {"ids": ",".join(feed_ids), "vs_currencies": self.vs_currency,
                  "include_last_updated_at": "true", "precision": "full"}
        self.requests += 1
        try:
            response = self._http.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{self._shown}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"{self._shown}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise NetworkError(f"{self._shown}: HTTP {response.status_code}",
                               retry_after=_retry_after(response.headers.get("Retry-After")))
        if response.status_code != 200:
            raise ApiError(f"{self._shown}: HTTP {response.status_code}: "
                           f"{response.text[:200]!r}")
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"{self._shown}: answer is not JSON: {response.text[:120]!r}") from exc


def _parse_entry(answer: Any, feed_id: str, vs: str, now: float,
                 shown: str) -> tuple[float, float]:
    if not isinstance(answer, dict):
        raise ApiError(f"{shown}: /simple/price answered a {type(answer).__name__}, "
                       "not an object")
    entry = answer.get(feed_id)
    if not isinstance(entry, dict):
        raise ApiError(f"{shown}: /simple/price has no entry for {feed_id!r}")
    price = entry.get(vs)
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(
            price) or price <= 0:
        raise ApiError(f"{shown}: /simple/price {feed_id}.{vs} is {price!r}, not a positive "
                       "number")
    updated = entry.get("last_updated_at")
    as_of = now
    if updated is not None:
        if isinstance(updated, bool) or not isinstance(updated, int | float):
            raise ApiError(f"{shown}: /simple/price {feed_id}.last_updated_at is {updated!r}")
        as_of = min(float(updated), now)
    return float(price), as_of


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None
