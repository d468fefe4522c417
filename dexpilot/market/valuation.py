"""Token prices in the quote token, read off the pools of one snapshot.

``quote_prices`` takes each token's price from its deepest pool against the quote token (or
against the hub, usually WETH, times the hub's price): the price a trade would see, to value
holdings and size orders. Floats in whole quote tokens per whole token, never amounts. It is
not a reference for the risk engine: every pool, the traded one included, feeds it; the
reference price a traded pool cannot move is ``dexpilot.market.reference``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from dexpilot.market.pools import MarketSnapshot, PoolSnapshot
from dexpilot.money import Token


def _direct_prices(snapshot: MarketSnapshot, quote: Token) -> dict[Token, list[tuple[int, float]]]:
    """token -> [(depth in quote raw units, price in quote)] over pools paired with ``quote``."""
    found: dict[Token, list[tuple[int, float]]] = defaultdict(list)
    for snap in snapshot.pools:
        if quote not in (snap.pool.token0, snap.pool.token1):
            continue
        token = snap.pool.other(quote)
        price = _price(snap, token)
        if price > 0:
            found[token].append((snap.reserves_from(token)[1], price))
    return found


def _price(snap: PoolSnapshot, token: Token) -> float:
    try:
        return snap.price_of(token)
    except ZeroDivisionError:
        return 0.0


def quote_prices(snapshot: MarketSnapshot, quote: Token, hub: Token) -> dict[str, float]:
    return _prices(snapshot, quote, hub, pick=lambda pairs: max(pairs)[1])


PricePick = Callable[[list[tuple[int, float]]], float]


def _prices(snapshot: MarketSnapshot, quote: Token, hub: Token, *,
            pick: PricePick) -> dict[str, float]:
    prices: dict[str, float] = {quote.symbol: 1.0}
    direct = _direct_prices(snapshot, quote)
    for token, pairs in direct.items():
        prices[token.symbol] = pick(pairs)
    hub_price = prices.get(hub.symbol)
    if hub_price:
        for token, pairs in _direct_prices(snapshot, hub).items():
            if token.symbol not in prices:
                prices[token.symbol] = pick(pairs) * hub_price
    return prices
