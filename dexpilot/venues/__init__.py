"""Venues: one interface, many DEXes (Uniswap V2 forks, Uniswap V3, aggregator APIs)."""

from dexpilot.venues.base import Quote, SwapTx, UnsupportedPair, Venue
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.uniswap_v3 import UniswapV3Venue
from dexpilot.venues.zeroex import ZeroExVenue

__all__ = ["Quote", "SwapTx", "UniswapV2Venue", "UniswapV3Venue", "UnsupportedPair", "Venue",
           "ZeroExVenue"]
