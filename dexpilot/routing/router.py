"""The DEX aggregator: the best way to fill one order across every venue, net of gas.

For an ``OrderIntent`` the router

1. asks every allowed venue for its candidates at the full size (V2 paths are computed from the
   snapshot with no round trip, V3 fee tiers and hub paths go out in one JSON-RPC batch, an
   aggregator API is one HTTP call). A venue that fails with ``NetworkError`` or ``ApiError``
   is skipped and reported in the route: the order still routes ("switch venue").
   ``SystemFault`` is never swallowed;
2. prices gas in ``token_out`` (gas units x gas price in wei, converted through the snapshot's
   deepest pools from the native token), so a two-hop path or an extra leg must pay for itself;
3. splits large orders across pool-disjoint constant-product paths (both V2 venues, and V3
   pools modelled by their in-range liquidity) at equal marginal prices (``split``), trying
   every disjoint subset of up to ``max_legs`` paths so each extra leg's gas is weighed;
   V2 legs are then quoted exactly from the snapshot, V3 legs by QuoterV2 in one batch;
4. keeps whichever is better net of gas: that split or the best single candidate.

An order pinned to a venue (``intent.venue``) is filled there in one leg on that venue's best
path. Legs of a split never share a pool, so executing them one after another leaves each
leg's quote valid.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dexpilot.errors import ApiError, NetworkError
from dexpilot.market.pools import MarketSnapshot, V2State, V3State, raw_price
from dexpilot.money import Token
from dexpilot.routing.split import CpCurve, optimal_split
from dexpilot.strategy.intent import OrderIntent
from dexpilot.venues.base import Quote, UnsupportedPair, Venue
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.uniswap_v3 import UniswapV3Venue
from dexpilot.venues.v2_math import get_amounts_out

FailureKind = Literal["network", "api", "unsupported"]


@dataclass(frozen=True, slots=True)
class RouteLeg:
    venue: str
    path: tuple[Token, ...]
    amount_in: int
    amount_out: int  # expected, from the venue's exact quote
    gas_estimate: int
    quote: Quote


@dataclass(frozen=True, slots=True)
class VenueFailure:
    """A venue the router skipped, and why (``unsupported``: it has no pool for the pair)."""

    venue: str
    kind: FailureKind
    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to fill the whole order, as quoted at full size."""

    venue: str
    path: tuple[str, ...]  # symbols, for reports
    amount_out: int
    gas_estimate: int
    net_amount_out: int


@dataclass(frozen=True, slots=True)
class Route:
    client_order_id: str
    token_in: Token
    token_out: Token
    amount_in: int
    legs: tuple[RouteLeg, ...]
    amount_out: int  # sum of the legs' expected outputs
    gas_estimate: int  # sum of the legs' gas
    gas_price_wei: int
    gas_cost_out: int | None  # the gas in token_out raw units; None if it could not be priced
    net_amount_out: int  # amount_out - gas_cost_out (amount_out when gas is unpriced)
    best_single: RouteLeg  # the best one-leg alternative, net of gas
    best_single_net_out: int
    block_number: int
    candidates: tuple[Candidate, ...] = ()
    skipped: tuple[VenueFailure, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def is_split(self) -> bool:
        return len(self.legs) > 1

    @property
    def venues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(leg.venue for leg in self.legs))

    @property
    def gain_vs_best_single_bps(self) -> float:
        """How much more this route delivers than the best single leg, net of gas."""
        if self.best_single_net_out <= 0:
            return 0.0
        return (self.net_amount_out / self.best_single_net_out - 1.0) * 10_000


class NoRouteError(ApiError):
    """No venue could quote the order; ``failures`` says why for each."""

    def __init__(self, message: str, failures: Sequence[VenueFailure]) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


class NoRouteNetworkError(NetworkError):
    """No venue answered at all (every failure was a network error): worth a retry."""

    def __init__(self, message: str, failures: Sequence[VenueFailure],
                 retry_after: float | None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.failures = tuple(failures)


@dataclass(slots=True)
class _Option:
    """A candidate that can take part in a split: its curve and what it needs to be quoted."""

    quote: Quote
    venue: Venue
    curve: CpCurve
    pools: frozenset[str]


class Router:
    def __init__(
        self,
        venues: Mapping[str, Venue] | Sequence[Venue],
        *,
        native: Token,
        max_legs: int = 4,
        split: bool = True,
        max_split_options: int = 10,
    ) -> None:
        items = list(venues.values()) if isinstance(venues, Mapping) else list(venues)
        self.venues: dict[str, Venue] = {}
        for venue in items:
            if venue.name in self.venues:
                raise ValueError(f"two venues are named {venue.name!r}")
            self.venues[venue.name] = venue
        if max_legs < 1:
            raise ValueError("max_legs must be >= 1")
        self.native = native
        self.max_legs = max_legs
        self.split = split
        self.max_split_options = max_split_options

    # -- the entry point -----------------------------------------------------------------
    def route(self, intent: OrderIntent, snapshot: MarketSnapshot, *, gas_price_wei: int,
              venues: Sequence[str] | None = None) -> Route:
        """The best way to sell ``intent.amount_in`` of ``token_in`` for ``token_out``.

        ``venues`` optionally restricts the venues considered; ``intent.venue`` pins one.
        Raises ``NoRouteError`` (an ``ApiError``) if nothing could quote, or
        ``NoRouteNetworkError`` if every venue failed to answer.
        """
        if not isinstance(gas_price_wei, int) or isinstance(gas_price_wei, bool) \
                or gas_price_wei < 0:
            raise ValueError(f"gas_price_wei must be a non-negative int, got {gas_price_wei!r}")
        names = self._allowed(intent, venues)
        token_in, token_out, amount = intent.token_in, intent.token_out, intent.amount_in

        rate = gas_rate(snapshot, self.native, token_out)

        def gas_cost(gas: int) -> int:
            return math.ceil(gas * gas_price_wei * rate) if rate is not None else 0

        quotes: list[tuple[Venue, Quote]] = []
        failures: list[VenueFailure] = []
        for name in names:
            venue = self.venues[name]
            try:
                found = venue.quote_candidates(token_in, token_out, amount, snapshot)
            except UnsupportedPair as exc:
                failures.append(VenueFailure(name, "unsupported", str(exc)))
                continue
            except ApiError as exc:
                failures.append(VenueFailure(name, "api", str(exc)))
                continue
            except NetworkError as exc:
                failures.append(VenueFailure(name, "network", str(exc), exc.retry_after))
                continue
            quotes.extend((venue, q) for q in found if q.amount_out > 0)
        if not quotes:
            raise _no_route(intent, failures)

        def net(q: Quote) -> int:
            return q.amount_out - gas_cost(q.gas_estimate)

        # Best net; on a tie the earlier venue (config order), then fewer hops.
        ranked = sorted(enumerate(quotes), key=lambda iq: (-net(iq[1][1]), iq[1][1].hops, iq[0]))
        best_quote = ranked[0][1][1]
        best_leg = _leg(best_quote)
        candidates = tuple(
            Candidate(q.venue, tuple(t.symbol for t in q.path), q.amount_out, q.gas_estimate,
                      net(q)) for _, (_, q) in ranked)

        legs: tuple[RouteLeg, ...] = (best_leg,)
        notes: list[str] = []
        if self.split and intent.venue is None:
            try:
                split_legs = self._split(quotes, amount, snapshot, gas_cost)
            except (ApiError, NetworkError) as exc:  # a requote failed: keep the single leg
                notes.append(f"split skipped: {exc}")
                split_legs = None
            if split_legs is not None:
                split_net = (sum(leg.amount_out for leg in split_legs)
                             - gas_cost(sum(leg.gas_estimate for leg in split_legs)))
                if split_net > net(best_quote):
                    legs = split_legs
        if rate is None:
            notes.append(f"no price path from {self.native.symbol} to {token_out.symbol} in the "
                         "snapshot: gas was not weighed")
        total_out = sum(leg.amount_out for leg in legs)
        total_gas = sum(leg.gas_estimate for leg in legs)
        cost = gas_cost(total_gas) if rate is not None else None
        return Route(
            client_order_id=intent.client_order_id,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            legs=legs,
            amount_out=total_out,
            gas_estimate=total_gas,
            gas_price_wei=gas_price_wei,
            gas_cost_out=cost,
            net_amount_out=total_out - (cost or 0),
            best_single=best_leg,
            best_single_net_out=net(best_quote),
            block_number=snapshot.block_number,
            candidates=candidates,
            skipped=tuple(failures),
            notes=tuple(notes),
        )

    def _allowed(self, intent: OrderIntent, venues: Sequence[str] | None) -> list[str]:
        names = list(self.venues) if venues is None else list(venues)
        unknown = [n for n in names if n not in self.venues]
        if unknown:
            raise ValueError(f"unknown venue(s) {unknown}; known: {sorted(self.venues)}")
        if intent.venue is not None:
            if intent.venue not in self.venues:
                raise ValueError(f"order {intent.client_order_id} is pinned to venue "
                                 f"{intent.venue!r}, which is not configured or not enabled "
                                 f"(known: {sorted(self.venues)})")
            if intent.venue not in names:
                raise ValueError(f"order {intent.client_order_id} is pinned to venue "
                                 f"{intent.venue!r}, which this call excludes")
            return [intent.venue]
        return names

    # -- splitting -----------------------------------------------------------------------
    def _split(self, quotes: Sequence[tuple[Venue, Quote]], amount: int,
               snapshot: MarketSnapshot, gas_cost: Callable[[int], int]
               ) -> tuple[RouteLeg, ...] | None:
        options = [o for o in (_option(v, q) for v, q in quotes) if o is not None]
        if len(options) < 2:
            return None
        # Keep the most promising paths (by full-size output net of gas) to bound the search.
        options.sort(key=lambda o: o.quote.amount_out - gas_cost(o.quote.gas_estimate),
                     reverse=True)
        options = options[: self.max_split_options]
        best: tuple[float, list[tuple[_Option, int]]] | None = None
        for size in range(2, min(self.max_legs, len(options)) + 1):
            for subset in itertools.combinations(options, size):
                if not _disjoint(subset):
                    continue
                amounts = optimal_split([o.curve for o in subset], amount)
                if any(a <= 0 for a in amounts):
                    continue  # a smaller subset covers this one without the idle leg's gas
                value = sum(_model_out(o, a) for o, a in zip(subset, amounts, strict=True))
                value -= gas_cost(sum(o.quote.gas_estimate for o in subset))
                if best is None or value > best[0]:
                    best = (value, list(zip(subset, amounts, strict=True)))
        if best is None:
            return None
        return self._quote_legs(best[1], snapshot)

    def _quote_legs(self, plan: Sequence[tuple[_Option, int]], snapshot: MarketSnapshot
                    ) -> tuple[RouteLeg, ...]:
        """Exact quotes for the planned amounts: V2 locally, V3 per venue in one batch."""
        legs: dict[int, RouteLeg] = {}
        v3_batches: dict[str, list[tuple[int, _Option, int]]] = {}
        for i, (option, amount) in enumerate(plan):
            venue = option.venue
            if isinstance(venue, UniswapV2Venue):
                q = venue.quote_path(option.quote.path, amount, option.quote.extra["hops"],
                                     block_number=option.quote.block_number)
                legs[i] = _leg(q)
            elif isinstance(venue, UniswapV3Venue):
                v3_batches.setdefault(venue.name, []).append((i, option, amount))
        for name, items in v3_batches.items():
            v3 = self.venues[name]
            assert isinstance(v3, UniswapV3Venue)
            results = v3.quote_routes([(v3.route_of(o.quote), a) for _, o, a in items], snapshot)
            for (i, _o, _a), result in zip(items, results, strict=True):
                if isinstance(result, ApiError):
                    raise result
                legs[i] = _leg(result)
        return tuple(legs[i] for i in range(len(plan)))


def _leg(q: Quote) -> RouteLeg:
    return RouteLeg(q.venue, q.path, q.amount_in, q.amount_out, q.gas_estimate, q)


def _option(venue: Venue, q: Quote) -> _Option | None:
    """A quote's constant-product model, if it has one (V2 exact, V3 from in-range liquidity)."""
    hops = None
    if isinstance(venue, UniswapV2Venue):
        hops = q.extra.get("hops")
    elif isinstance(venue, UniswapV3Venue):
        hops = q.extra.get("virtual_hops")
    if not hops or not q.pools or len(q.fees_ppm) != len(hops):
        return None
    try:
        curve = CpCurve.from_hops(hops, q.fees_ppm)
    except ValueError:
        return None
    return _Option(q, venue, curve, frozenset(a.lower() for a in q.pools))


def _model_out(option: _Option, amount: int) -> float:
    """A leg's output for planning: exact for V2 (the router's own math), the model for V3."""
    if isinstance(option.venue, UniswapV2Venue):
        return float(get_amounts_out(amount, option.quote.extra["hops"],
                                     option.quote.fees_ppm)[-1])
    return option.curve.amount_out(float(amount))


def _disjoint(options: Sequence[_Option]) -> bool:
    seen: set[str] = set()
    for o in options:
        if seen & o.pools:
            return False
        seen |= o.pools
    return True


def _no_route(intent: OrderIntent, failures: Sequence[VenueFailure]) -> Exception:
    pair = f"{intent.token_in.symbol}->{intent.token_out.symbol}"
    detail = "; ".join(f"{f.venue} ({f.kind}): {f.message}" for f in failures) or "no venues"
    message = f"order {intent.client_order_id}: no venue could quote {pair}: {detail}"
    if failures and all(f.kind == "network" for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        return NoRouteNetworkError(message, failures, min(waits) if waits else None)
    return NoRouteError(message, failures)


# -- gas in token_out ------------------------------------------------------------------------


def gas_rate(snapshot: MarketSnapshot, native: Token, token_out: Token) -> float | None:
    """Raw units of ``token_out`` per raw unit (wei) of the native token, through the deepest
    pool of each pair in the snapshot (fewest hops). ``None`` if no path connects them.

    A float, used only to weigh gas against output when ranking routes."""
    start, goal = native.address.lower(), token_out.address.lower()
    if start == goal:
        return 1.0
    # For each pair keep the deepest pool: sqrt(r0*r1) for V2, L for V3 (the same measure).
    deepest: dict[frozenset[str], tuple[float, str, float]] = {}
    for snap in snapshot.pools:
        state = snap.state
        if isinstance(state, V2State):
            depth = math.sqrt(state.reserve0 * state.reserve1)
        elif isinstance(state, V3State):
            depth = float(state.liquidity)
        else:  # pragma: no cover - PoolState is one of the two
            continue
        price = raw_price(state)
        if depth <= 0 or price <= 0 or not math.isfinite(price):
            continue
        t0, t1 = snap.pool.token0.address.lower(), snap.pool.token1.address.lower()
        key = frozenset((t0, t1))
        if key not in deepest or depth > deepest[key][0]:
            deepest[key] = (depth, t0, price)
    edges: dict[str, list[tuple[str, float]]] = {}
    for key, (_depth, t0, price) in deepest.items():
        (t1,) = key - {t0}
        edges.setdefault(t0, []).append((t1, price))
        edges.setdefault(t1, []).append((t0, 1.0 / price))
    rates = {start: 1.0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt, price in edges.get(node, []):
            if nxt not in rates:
                rates[nxt] = rates[node] * price
                if nxt == goal:
                    return rates[nxt]
                queue.append(nxt)
    return None
