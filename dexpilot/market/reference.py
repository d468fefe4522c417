"""Reference prices that the traded pool cannot move.

The problem. Before a trade, the risk engine compares the traded pool's price with a reference
price and refuses a pool that is far off: the pool may have just been pushed (a sandwich or a
flash-loan manipulation in the same block) or be broken. A reference that includes the traded
pool's own spot price fails exactly then: with one pool it *is* that pool's price and can
never disagree; with two pools the median is their midpoint, so the honest pool is refused as
well; a pool listed twice outvotes the others (config now refuses duplicates, and sources are
counted per pool here as well).

So a pool's reference never includes that pool's spot price. Its sources, each counted once:

``feed``   the external price feed (``dexpilot.market.price_feed``), where one is configured and
           answers for both tokens. Nothing on chain moves it, so it alone is enough.
``twap``   a pool's time-weighted price over ``risk.reference_twap_window_s``, *the traded pool's
           own included*: Uniswap V3 ``observe([window, 0])``; Uniswap V2 the pair's
           ``price{0,1}CumulativeLast`` brought to the snapshot's block (``currentCumulativePrices``
           of Uniswap's ``UniswapV2OracleLibrary``) against an earlier observation this process
           kept (``V2TwapHistory``). Both accumulators add each price only once time has passed
           on it, so a price set in the current block contributes nothing, and a price held for
           ``t`` seconds moves the average by ``t / window`` of the move: a same-block push,
           which is what the check is for, cannot move it. What it does not resist is a price
           held off for much of the window, which costs the manipulator that long in arbitrage.
``spot``   the spot price of another pool for the same pair (another venue or fee tier) that
           offers no TWAP. Independent of the traded pool, but movable by whoever also pushes
           that pool; the median over several such sources is what protects.
``cross``  only where no other pool trades the pair directly: the pair through the hub (WETH)
           or the quote token, each leg priced by that leg's pools (TWAP or spot, as above, the
           median per leg). One source per intermediate token: the two legs are one price.

One source per pool: a pool with a TWAP contributes its TWAP and not also its spot price.
Counting both would make one pool two sources, and with two pools the pushed pool's spot would
again drag the honest pool's reference halfway to itself; its TWAP does not. The cost is lag:
after a real market move the TWAPs trail the spot prices for up to a window, so a configured
feed (or a shorter window) suits a fast market better.

This module only gathers the sources (pure, no I/O; floats, for checks only). What the reference
is (the feed alone, else the median of the on-chain sources), how many sources are enough
(``risk.min_reference_sources``) and how far a pool may be from it are decided in one place:
``dexpilot.risk.checks.ReferencePriceCheck``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dexpilot.market.pools import (
    MarketSnapshot,
    PoolKind,
    PoolRef,
    PoolSnapshot,
    V2Oracle,
    V2State,
    V3Oracle,
    raw_price,
)
from dexpilot.money import Token

Q112 = 2**112
UINT32 = 2**32
UINT256 = 2**256
TICK_BASE = 1.0001


class SourceKind(StrEnum):
    FEED = "feed"
    TWAP = "twap"
    SPOT = "spot"
    CROSS = "cross"


@dataclass(frozen=True, slots=True)
class ReferenceSource:
    """One independent price of the reference's ``base`` in its ``counter`` (whole units)."""

    kind: SourceKind
    label: str  # what it is and where it came from, for reasons and the ledger
    price: float

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SourceKind):
            raise TypeError(f"reference source {self.label!r}: kind must be a SourceKind")
        if isinstance(self.price, bool) or not isinstance(self.price, int | float) \
                or not math.isfinite(self.price) or self.price <= 0:
            raise ValueError(f"reference source {self.label!r}: price must be a finite number "
                             f"> 0, got {self.price!r}")


@dataclass(frozen=True, slots=True)
class PriceReference:
    """The sources independent of ``pools`` (the pools a trade goes through, named) for the
    price of ``base`` in ``counter``: what ``ReferencePriceCheck`` judges a trade by."""

    base: str
    counter: str
    pools: tuple[str, ...]
    sources: tuple[ReferenceSource, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "pools", tuple(self.pools))
        object.__setattr__(self, "sources", tuple(self.sources))
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"reference for {self.base}/{self.counter}: a source is listed "
                             f"twice in {labels}")

    def of(self, kind: SourceKind) -> tuple[ReferenceSource, ...]:
        return tuple(s for s in self.sources if s.kind is kind)

    def on_chain(self) -> tuple[ReferenceSource, ...]:
        return tuple(s for s in self.sources if s.kind is not SourceKind.FEED)


# -- the pools' own oracles -----------------------------------------------------------------


def v2_cumulatives_at(oracle: V2Oracle, state: V2State, timestamp: int) -> tuple[int, int]:
    """The pair's ``(price0Cumulative, price1Cumulative)`` as of ``timestamp``.

    The pair updates its accumulators only when its reserves change; between updates the
    current reserves' price has been accruing, which ``UniswapV2OracleLibrary
    .currentCumulativePrices`` adds counterfactually: ``(reserve1 << 112) / reserve0`` per
    second since ``blockTimestampLast``. Timestamps are uint32 and the sums wrap at 2**256 on
    chain; both are done the same way here so differences come out exact.
    """
    c0, c1 = oracle.price0_cumulative_last, oracle.price1_cumulative_last
    elapsed = (timestamp % UINT32 - oracle.block_timestamp_last) % UINT32
    if elapsed and state.reserve0 and state.reserve1:
        c0 = (c0 + (state.reserve1 * Q112 // state.reserve0) * elapsed) % UINT256
        c1 = (c1 + (state.reserve0 * Q112 // state.reserve1) * elapsed) % UINT256
    return c0, c1


def v2_average_price0(then: int, now: int, elapsed_s: int) -> float:
    """token1 raw units per token0 raw unit averaged over ``elapsed_s`` seconds, from two
    ``price0Cumulative`` values (UQ112x112 seconds; the subtraction wraps as on chain)."""
    if elapsed_s <= 0:
        raise ValueError(f"a time-weighted average needs elapsed time > 0, got {elapsed_s}")
    return ((now - then) % UINT256 // elapsed_s) / Q112


def v3_mean_tick(oracle: V3Oracle) -> int:
    """The arithmetic mean tick over the window, rounded towards negative infinity as Uniswap's
    ``OracleLibrary.consult`` does (Python's ``//`` already floors)."""
    start, end = oracle.tick_cumulatives
    return (end - start) // oracle.window_s


@dataclass(frozen=True, slots=True)
class V2Observation:
    timestamp: int  # the block timestamp the cumulatives are brought to
    price0_cumulative: int
    price1_cumulative: int


@dataclass
class V2TwapHistory:
    """The earlier observations a V2 pair's TWAP is measured against.

    A V2 pair stores only its current accumulators, so a time-weighted price needs a value
    from ``window`` seconds ago that someone kept: as in Uniswap's sliding-window oracle
    example, this keeps one observation per pool every ``window / GRANULARITY`` seconds and
    forgets those older than twice the window. The TWAP uses the newest observation at least
    one window old; none that old (a process that just started), no TWAP.
    """

    GRANULARITY = 8
    observations: dict[str, list[V2Observation]] = field(default_factory=dict)

    def record(self, snapshot: MarketSnapshot, window_s: int) -> None:
        now = snapshot.block_timestamp
        spacing = max(1, window_s // self.GRANULARITY)
        for snap in snapshot.pools:
            if not isinstance(snap.oracle, V2Oracle) or not isinstance(snap.state, V2State):
                continue
            kept = self._valid(snap.pool.address, now)
            if kept and now - kept[-1].timestamp < spacing:
                continue
            c0, c1 = v2_cumulatives_at(snap.oracle, snap.state, now)
            kept.append(V2Observation(now, c0, c1))
            # Keep the newest observation older than twice the window only until a younger
            # one has aged into the window: the TWAP never reaches further back than that.
            while len(kept) > 1 and now - kept[1].timestamp >= 2 * window_s:
                kept.pop(0)

    def price0(self, snap: PoolSnapshot, now: int, window_s: int) -> float | None:
        """The pair's token1-per-token0 raw price averaged from the newest kept observation at
        least ``window_s`` old (and at most twice that) up to ``now``."""
        if not isinstance(snap.oracle, V2Oracle) or not isinstance(snap.state, V2State):
            return None
        then = next((o for o in reversed(self._valid(snap.pool.address, now))
                     if window_s <= now - o.timestamp <= 2 * window_s), None)
        if then is None:
            return None
        c0, _ = v2_cumulatives_at(snap.oracle, snap.state, now)
        return v2_average_price0(then.price0_cumulative, c0, now - then.timestamp)

    def _valid(self, address: str, now: int) -> list[V2Observation]:
        kept = self.observations.setdefault(address.lower(), [])
        if kept and kept[-1].timestamp > now:
            kept.clear()  # the chain went back (a reorg, a reverted test chain): start over
        return kept


# -- gathering the sources ------------------------------------------------------------------


def _whole(raw: float, pool: PoolRef) -> float:
    """token1 raw per token0 raw -> whole token1 per whole token0."""
    return raw * 10.0 ** (pool.token0.decimals - pool.token1.decimals)


def pool_twap(snap: PoolSnapshot, now: int, window_s: int,
              history: V2TwapHistory | None) -> float | None:
    """The pool's time-weighted price of token0 in token1 (whole units), or ``None``."""
    raw: float | None = None
    if isinstance(snap.oracle, V3Oracle):
        raw = TICK_BASE ** v3_mean_tick(snap.oracle)
    elif snap.pool.kind is PoolKind.V2 and history is not None:
        raw = history.price0(snap, now, window_s)
    if raw is None or not math.isfinite(raw) or raw <= 0:
        return None
    return _whole(raw, snap.pool)


def pool_label(pool: PoolRef) -> str:
    return f"{pool.venue} {pool.pair} {pool.address}"


def _same(a: Token, b: Token) -> bool:
    return a.address.lower() == b.address.lower()


def _oriented(price0: float, pool: PoolRef, base: Token) -> float:
    return price0 if _same(pool.token0, base) else 1.0 / price0


def _pool_sources(snapshot: MarketSnapshot, base: Token, counter: Token,
                  traded: Collection[str], window_s: int,
                  history: V2TwapHistory | None) -> tuple[list[ReferenceSource], bool]:
    """One source per pool of the pair: its TWAP, else (never for a traded pool) its spot.
    Also says whether any pool of the pair is not traded (then no cross is needed)."""
    sources: list[ReferenceSource] = []
    seen: set[str] = set()
    untraded = False
    for snap in snapshot.pools:
        pool = snap.pool
        address = pool.address.lower()
        if address in seen or {pool.token0.address.lower(), pool.token1.address.lower()} != {
                base.address.lower(), counter.address.lower()}:
            continue
        seen.add(address)
        is_traded = address in traded
        untraded |= not is_traded
        twap = pool_twap(snap, snapshot.block_timestamp, window_s, history)
        if twap is not None:
            sources.append(ReferenceSource(SourceKind.TWAP, f"twap {window_s} s {pool_label(pool)}",
                                           _oriented(twap, pool, base)))
            continue
        if is_traded:
            continue  # its spot price is the very price under test
        spot = _whole(raw_price(snap.state), pool)
        if math.isfinite(spot) and spot > 0:
            sources.append(ReferenceSource(SourceKind.SPOT, f"spot {pool_label(pool)}",
                                           _oriented(spot, pool, base)))
    return sources, untraded


def reference_for(
    snapshot: MarketSnapshot,
    base: Token,
    counter: Token,
    traded: Iterable[str],
    *,
    window_s: int,
    history: V2TwapHistory | None = None,
    feed: Mapping[str, float] | None = None,
    hubs: Sequence[Token] = (),
    traded_labels: Sequence[str] | None = None,
) -> PriceReference:
    """The sources for the price of ``base`` in ``counter`` independent of the ``traded`` pool
    addresses (see the module docstring). ``feed``: token symbol -> price in one common unit
    (the feed's answer); ``hubs``: the tokens a missing direct pair may be crossed through."""
    traded_order = list(dict.fromkeys(a.lower() for a in traded))
    traded_set = set(traded_order)
    sources: list[ReferenceSource] = []
    if feed:
        p_base, p_counter = feed.get(base.symbol), feed.get(counter.symbol)
        if p_base and p_counter and p_base > 0 and p_counter > 0 \
                and math.isfinite(p_base / p_counter):
            sources.append(ReferenceSource(SourceKind.FEED, "feed", p_base / p_counter))
    direct, untraded = _pool_sources(snapshot, base, counter, traded_set, window_s, history)
    sources += direct
    if not untraded:
        for hub in hubs:
            if _same(hub, base) or _same(hub, counter):
                continue
            legs = [_pool_sources(snapshot, a, b, traded_set, window_s, history)[0]
                    for a, b in ((base, hub), (hub, counter))]
            if not all(legs):
                continue
            price = math.prod(statistics.median(s.price for s in leg) for leg in legs)
            names = " x ".join("/".join(s.label for s in leg) for leg in legs)
            sources.append(ReferenceSource(SourceKind.CROSS, f"cross via {hub.symbol}: {names}",
                                           price))
    if traded_labels is None:
        by_address = {s.pool.address.lower(): pool_label(s.pool) for s in snapshot.pools}
        traded_labels = [by_address.get(a, a) for a in traded_order]
    return PriceReference(base.symbol, counter.symbol, tuple(traded_labels), tuple(sources))
