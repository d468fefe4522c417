"""The risk proposal for a routed order: how the trading cycle and the backtest both ask the
risk engine, so both are judged by the same numbers."""

from __future__ import annotations

from collections.abc import Mapping

from dexpilot.market.pools import MarketSnapshot
from dexpilot.market.reference import PriceReference
from dexpilot.money import Token
from dexpilot.risk import TradeProposal, min_amount_out
from dexpilot.risk.checks import quote_value
from dexpilot.routing.router import Route
from dexpilot.strategy.intent import OrderIntent


def proposal_for(intent: OrderIntent, route: Route, prices: Mapping[str, float], quote: Token,
                 slippage_bps: int, gas_price_wei: int,
                 snapshot: MarketSnapshot | None = None,
                 reference: PriceReference | None = None) -> TradeProposal:
    """What the risk engine judges: the route's output, its bound, values in the quote token,
    the worst leg's price impact, the gas, the pinned pool's pre-trade price and the
    ``reference`` independent of the pools traded (``traded_pools``)."""
    pool_price = None
    pool = intent.details.get("pool")
    if isinstance(pool, str) and snapshot is not None:
        pool_price = snapshot.pool(pool).price_of(intent.token_in)
    return TradeProposal(
        intent=intent, expected_out=route.amount_out,
        min_out=min_amount_out(route.amount_out, slippage_bps),
        amount_in_quote=quote_value(intent.amount_in, intent.token_in,
                                    prices.get(intent.token_in.symbol, 0.0), quote),
        expected_out_quote=quote_value(route.amount_out, intent.token_out,
                                       prices.get(intent.token_out.symbol, 0.0), quote),
        price_impact_bps=max(leg.quote.price_impact_bps for leg in route.legs),
        venues=route.venues, gas_limit=max(route.gas_estimate, 1),
        gas_price_wei=gas_price_wei, pool_price=pool_price, reference=reference,
    )


def traded_pools(intent: OrderIntent, route: Route) -> tuple[str, ...]:
    """Every pool the order's price comes from: the intent's pinned pool and each leg's pools,
    in order. None of them may be part of the order's reference price."""
    pinned = intent.details.get("pool")
    pools = [pinned] if isinstance(pinned, str) else []
    for leg in route.legs:
        pools.extend(leg.quote.pools)
    return tuple(dict.fromkeys(pools))
