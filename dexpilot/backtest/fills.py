"""The backtest's market: one constant-product pool per pair, re-centred on every candle.

Each candle's close sets a Uniswap V2-style pool (``token0`` = base, ``token1`` = quote) of a
given depth; the bot's own fills move that pool within the candle (later orders of the same
step see the impact of earlier ones), and the next candle re-centres it on the market's close.
Fills use ``dexpilot.venues.v2_math.get_amount_out``: the same integer math the Uniswap V2
venue quotes with and the router routes on (DESIGN: one piece of math, one place). Gas is
charged per swap at the route's gas estimate and the configured gas price.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from dexpilot.market.pools import MarketSnapshot, PoolKind, PoolRef, PoolSnapshot, V2State
from dexpilot.money import Token
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.v2_math import get_amount_out

VENUE = "backtest-v2"
ROUTER = "0x" + "00" * 19 + "01"
KNOWN_DECIMALS = {"USDC": 6, "USDT": 6, "WBTC": 8, "DAI": 18, "WETH": 18, "UNI": 18}


def token_for(symbol: str, decimals: Mapping[str, int] | None = None) -> Token:
    """A stand-in token: a stable fake address per symbol, decimals from ``decimals`` or the
    usual ones (USDC 6, WBTC 8, else 18)."""
    digits = (decimals or {}).get(symbol, KNOWN_DECIMALS.get(symbol, 18))
    address = "0x" + hashlib.sha256(symbol.encode()).hexdigest()[:40]
    return Token(symbol, address, digits)


def pool_address(pair: str) -> str:
    return "0x" + hashlib.sha256(f"pool:{pair}".encode()).hexdigest()[:40]


@dataclass
class PoolBook:
    """The simulated pools of one step, their reserves moved by this step's fills."""

    refs: dict[str, PoolRef]  # pair -> pool
    depth_quote: int  # quote-side reserve at the close, raw units
    reserves: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (r0, r1)

    @classmethod
    def build(cls, pairs: Mapping[str, tuple[Token, Token]], depth_quote: int,
              fee_ppm: int) -> PoolBook:
        refs = {pair: PoolRef(VENUE, PoolKind.V2, pool_address(pair), base, quote, fee_ppm)
                for pair, (base, quote) in pairs.items()}
        return cls(refs, depth_quote)

    def recentre(self, closes: Mapping[str, float]) -> None:
        """Every pool at the candle's close: ``r1 / r0 == close`` (decimals applied)."""
        self.reserves = {}
        for pair, ref in self.refs.items():
            price = closes[pair]
            r1 = self.depth_quote
            r0 = int(r1 / price / 10**ref.token1.decimals * 10**ref.token0.decimals)
            self.reserves[ref.address] = (max(r0, 1), r1)

    def snapshot(self, block: int, timestamp: int) -> MarketSnapshot:
        pools = tuple(PoolSnapshot(ref, V2State(*self.reserves[ref.address]), block)
                      for ref in self.refs.values())
        return MarketSnapshot(block, timestamp, 0, pools)

    def venue(self, hubs: tuple[Token, ...] = ()) -> UniswapV2Venue:
        return UniswapV2Venue(VENUE, router=ROUTER, pools=self.refs.values(), hubs=hubs)

    def fill(self, pool: PoolRef, token_in: Token, amount_in: int) -> int:
        """Swap ``amount_in`` through ``pool`` now; its reserves move. Returns the output."""
        r0, r1 = self.reserves[pool.address]
        if token_in == pool.token0:
            out = get_amount_out(amount_in, r0, r1, pool.fee_ppm)
            self.reserves[pool.address] = (r0 + amount_in, r1 - out)
        else:
            out = get_amount_out(amount_in, r1, r0, pool.fee_ppm)
            self.reserves[pool.address] = (r0 - out, r1 + amount_in)
        return out

    def pool_between(self, a: Token, b: Token) -> PoolRef:
        for ref in self.refs.values():
            if {ref.token0, ref.token1} == {a, b}:
                return ref
        raise KeyError(f"no pool {a.symbol}/{b.symbol}")
