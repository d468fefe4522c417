"""Cross-venue spread: the one implementation the analyzer reports and arbitrage trades.

For each token pair quoted on more than one venue, the spread is how much more the dearest
venue pays for the pair's base token than the cheapest one charges, in basis points, before
and after both pools' LP fees. Prices here are floats for ranking; any trade that follows is
sized and bounded with the venues' integer math.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from dexpilot.market.pools import PoolSnapshot


@dataclass(frozen=True, slots=True)
class PairSpread:
    pair: str  # "BASE/QUOTE": base is token0 of every pool in the group
    cheapest: PoolSnapshot  # where base costs least: buy here
    dearest: PoolSnapshot  # where base fetches most: sell here
    gross_bps: float
    net_of_fees_bps: float


def pair_key(snap: PoolSnapshot) -> str:
    return snap.pool.pair


def cross_venue_spreads(pools: Iterable[PoolSnapshot]) -> list[PairSpread]:
    """One entry per pair found in at least two pools, widest net spread first."""
    groups: dict[str, list[PoolSnapshot]] = defaultdict(list)
    for snap in pools:
        groups[pair_key(snap)].append(snap)
    spreads = []
    for pair, snaps in groups.items():
        priced = [s for s in snaps if s.price() > 0]
        if len(priced) < 2:
            continue
        cheapest = min(priced, key=lambda s: s.price())
        dearest = max(priced, key=lambda s: s.price())
        gross = (dearest.price() / cheapest.price() - 1.0) * 10_000
        fees_bps = (cheapest.pool.fee_ppm + dearest.pool.fee_ppm) / 100
        spreads.append(PairSpread(pair, cheapest, dearest, gross, gross - fees_bps))
    spreads.sort(key=lambda s: s.net_of_fees_bps, reverse=True)
    return spreads
