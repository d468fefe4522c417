"""Cross-venue spread model: a signal wherever one pair trades at different prices on two pools.

The spread itself comes from ``dexpilot.market.spread`` (one implementation for analysis and
trading); this model only turns the widest spreads into ``Signal``s the strategies read.
Gas is not known here: the arbitrage strategy prices it when it sizes the trade.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dexpilot.analysis.signal import Side, Signal
from dexpilot.market.pools import MarketSnapshot
from dexpilot.market.spread import cross_venue_spreads

MODEL = "cross_venue_spread"
BLOCK_HORIZON_S = 12.0  # a spread is worth acting on for about one block


def spread_signals(snapshot: MarketSnapshot, *, min_net_bps: float = 0.0) -> list[Signal]:
    at = datetime.fromtimestamp(snapshot.block_timestamp, UTC)
    signals = []
    for spread in cross_venue_spreads(snapshot.pools):
        if spread.net_of_fees_bps <= min_net_bps:
            continue
        signals.append(Signal(
            model=MODEL, pair=spread.pair, side=Side.BUY, edge_bps=spread.net_of_fees_bps,
            confidence=1.0, horizon_s=BLOCK_HORIZON_S, inputs_from=at, inputs_to=at,
            details={"buy_pool": spread.cheapest.pool.address,
                     "buy_venue": spread.cheapest.pool.venue,
                     "sell_pool": spread.dearest.pool.address,
                     "sell_venue": spread.dearest.pool.venue,
                     "gross_bps": round(spread.gross_bps, 3),
                     "block": snapshot.block_number},
        ))
    return signals
