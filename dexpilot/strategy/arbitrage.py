"""Cross-venue arbitrage: buy where a token is cheap, sell where it is dear, from inventory.

Wallet A holds both tokens of a pair, so the two legs need not be atomic: leg 1 sells the
start token for the other on the cheap pool, leg 2 sells that much of the other token back on
the dear pool. The size is the closed-form optimum for two constant-product pools
(``optimal_round_trip_input``), capped by the per-trade limit and the wallet's balances, and
the order is only proposed when the expected profit pays both swaps' gas and leaves a
minimum margin: LP fees are inside the pool math already.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dexpilot.analysis.signal import Signal
from dexpilot.analysis.spread_model import MODEL as SPREAD_MODEL
from dexpilot.market.pools import PoolSnapshot
from dexpilot.money import Token
from dexpilot.strategy.base import Strategy, StrategyContext
from dexpilot.strategy.intent import OrderIntent
from dexpilot.venues.v2_math import PPM, get_amount_out

SWAP_GAS = 180_000  # per leg, typical of a V2/V3 exact-input swap


def optimal_round_trip_input(
    cheap: tuple[int, int], dear: tuple[int, int], fee_cheap_ppm: int, fee_dear_ppm: int
) -> int:
    """Input that maximises ``out_dear(out_cheap(x)) - x`` for two constant-product pools.

    ``cheap`` is (reserve of start token, reserve of other token) of the pool bought on;
    ``dear`` is (reserve of other token, reserve of start token) of the pool sold on. The
    composite of two CPMM swaps is ``E1 x / (E0 + k x)``; setting its slope to 1 gives
    ``x* = (sqrt(E0 E1) - E0) / k``. Zero when there is no profitable size.
    """
    g1, g2 = (PPM - fee_cheap_ppm) / PPM, (PPM - fee_dear_ppm) / PPM
    s_in, o_out = cheap
    o_in, s_out = dear
    e0 = s_in * o_in
    e1 = g1 * g2 * o_out * s_out
    k = g1 * (o_in + g2 * o_out)
    if e1 <= e0 or k <= 0:
        return 0
    return max(0, int((math.sqrt(e0 * e1) - e0) / k))


class CrossVenueArbitrage(Strategy):
    name = "cross_venue_arbitrage"

    def __init__(self, *, min_profit_bps: float = 5.0, size_fraction: float = 0.9) -> None:
        self.min_profit_bps = min_profit_bps
        # Trading a bit less than the optimum keeps most of the profit and a margin for
        # the price moving between quote and mining.
        self.size_fraction = size_fraction

    def orders(self, signals: Sequence[Signal], context: StrategyContext) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        used_pools: set[str] = set()
        for signal in sorted(signals, key=lambda s: s.edge_bps, reverse=True):
            if signal.model != SPREAD_MODEL:
                continue
            buy = context.snapshot.pool(str(signal.details["buy_pool"]))
            sell = context.snapshot.pool(str(signal.details["sell_pool"]))
            if {buy.pool.address, sell.pool.address} & used_pools:
                continue  # one trade per pool per cycle: later quotes would be stale
            legs = self._legs(buy, sell, signal, context)
            if legs:
                intents.extend(legs)
                used_pools |= {buy.pool.address, sell.pool.address}
        return intents

    def _legs(self, buy: PoolSnapshot, sell: PoolSnapshot, signal: Signal,
              context: StrategyContext) -> list[OrderIntent]:
        # Round trip in the strategy's quote token if the pair has it, else in token1.
        base, other = buy.pool.token0, buy.pool.token1
        start = context.quote_token if context.quote_token in (base, other) else other
        middle = base if start == other else other
        # The pools' prices are of token0 in token1: "cheap" means token0 is cheap there.
        if start == buy.pool.token0:
            buy, sell = sell, buy  # selling token0 for token1 is best where token0 is dear
        cheap_res = buy.reserves_from(start)
        dear_res = sell.reserves_from(middle)
        optimum = optimal_round_trip_input(cheap_res, dear_res, buy.pool.fee_ppm,
                                           sell.pool.fee_ppm)
        amount_in = int(optimum * self.size_fraction)
        amount_in = min(amount_in, self._cap(start, context))
        if amount_in <= 0:
            return []
        middle_out = get_amount_out(amount_in, *cheap_res, buy.pool.fee_ppm)
        back = get_amount_out(middle_out, *dear_res, sell.pool.fee_ppm) if middle_out else 0
        held_middle = context.balances.get(middle.symbol, 0)
        if middle_out <= 0 or middle_out > held_middle:
            return []
        profit = back - amount_in
        gas_cost = self._gas_cost_in(start, context)
        # The slippage bound is a worst case the swaps may not cross, not an expected cost:
        # the profit must pay the gas and leave ``min_profit_bps`` of margin.
        profit_bps = (profit - gas_cost) / amount_in * 10_000
        if profit - gas_cost <= 0 or profit_bps < self.min_profit_bps:
            return []
        group = f"{context.cycle_id}-arb-{buy.pool.address[2:8]}-{sell.pool.address[2:8]}"
        reason = (f"{signal.pair}: buy {middle.symbol} on {buy.pool.venue}, sell on "
                  f"{sell.pool.venue}; expected profit {profit_bps:.1f} bps after gas")
        edge = profit_bps / 2  # each leg's share of the round trip's edge
        return [
            OrderIntent(f"{group}-1", self.name, start, middle, amount_in, venue=buy.pool.venue,
                        group_id=group, reason=reason, min_edge_bps=0.0,
                        details={"expected_out": middle_out, "pool": buy.pool.address,
                                 "leg_edge_bps": edge}),
            OrderIntent(f"{group}-2", self.name, middle, start, middle_out,
                        venue=sell.pool.venue, group_id=group, reason=reason, min_edge_bps=0.0,
                        details={"expected_out": back, "pool": sell.pool.address,
                                 "leg_edge_bps": edge}),
        ]

    def _cap(self, start: Token, context: StrategyContext) -> int:
        held = context.balances.get(start.symbol, 0)
        if start == context.quote_token:
            return min(held, context.max_trade_quote)
        price = context.prices.get(start.symbol, 0.0)
        if price <= 0:
            return 0
        # 2 % under the limit: the risk engine values the order at its own prices.
        cap = int(context.max_trade_quote * 0.98 / 10**context.quote_token.decimals / price
                  * 10**start.decimals)
        return min(held, cap)

    def _gas_cost_in(self, token: Token, context: StrategyContext) -> int:
        gas_quote = 2 * SWAP_GAS * context.gas_price_wei / 10**18 * context.native_price_quote
        if token == context.quote_token:
            return math.ceil(gas_quote * 10.0**token.decimals)
        price = context.prices.get(token.symbol, 0.0)
        return math.ceil(gas_quote / price * 10.0**token.decimals) if price > 0 else 2**255

