"""The router on the real dev chain: best venue net of gas, pinning, switching away from a
failing aggregator, optimal splits (checked against brute force and executed on chain), and
two-hop routes through WETH."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from itertools import count

import pytest

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError, NetworkError
from dexpilot.market.pools import MarketSnapshot
from dexpilot.money import Token
from dexpilot.routing import NoRouteError, NoRouteNetworkError, Route, Router, gas_rate
from dexpilot.routing.split import CpCurve, grid_optimum, optimal_split, to_integers
from dexpilot.strategy.intent import OrderIntent
from dexpilot.venues.base import Venue
from dexpilot.venues.registry import venues_from_manifest
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.v2_math import get_amounts_out
from tests.fakes.zeroex_server import FakeZeroEx
from tests.test_venues import balance, execute, snapshot_of, tokens_of, v2_states

GWEI = 10**9
_ids = count(1)


def intent(token_in: Token, token_out: Token, amount: int, venue: str | None = None
           ) -> OrderIntent:
    return OrderIntent(client_order_id=f"t-{next(_ids)}", strategy="test", token_in=token_in,
                       token_out=token_out, amount_in=amount, venue=venue)


def all_venues(chain: RpcClient, devnet: DevnetManifest, zeroex: FakeZeroEx | None = None
               ) -> dict[str, Venue]:
    extra = [zeroex.venue_config()] if zeroex is not None else []
    return venues_from_manifest(devnet, chain, extra=extra, aggregator_timeout_s=0.5)


def router_for(venues: dict[str, Venue], devnet: DevnetManifest, **kwargs: object) -> Router:
    return Router(venues, native=tokens_of(devnet)["WETH"], **kwargs)  # type: ignore[arg-type]


def execute_route(chain: RpcClient, venues: dict[str, Venue], route: Route, wallet: str
                  ) -> int:
    """Send every leg, one after another; each must deliver exactly its quote."""
    total = 0
    for leg in route.legs:
        received, _ = execute(chain, venues[leg.venue], leg.quote, wallet)
        assert received == leg.amount_out, (leg.venue, [t.symbol for t in leg.path])
        total += received
    return total


# -- the split math alone --------------------------------------------------------------------


def test_closed_form_split_equalises_marginal_prices() -> None:
    curves = [CpCurve.from_hops([(10**24, 3 * 10**12)], [3000]),
              CpCurve.from_hops([(10**24, int(3.012 * 10**12))], [3000]),
              CpCurve.from_hops([(10**24, 10**24), (10**24, 3 * 10**12)], [0, 3000])]
    amount = 5 * 10**22
    amounts = optimal_split(curves, amount)
    assert sum(amounts) == amount and all(a > 0 for a in amounts)
    marginals = [c.marginal(a) for c, a in zip(curves, amounts, strict=True)]
    assert max(marginals) / min(marginals) - 1 < 1e-9
    # A tiny order goes to the best price alone.
    assert optimal_split(curves, 10**15) == [0, 10**15, 0]
    # Integer shares always sum exactly, even beyond float precision.
    assert sum(to_integers([1 / 3, 1 / 3, 1 / 3], 10**30 + 7)) == 10**30 + 7


def test_composed_curve_matches_the_integer_math() -> None:
    hops = [(7 * 10**22, 2 * 10**22), (10**21, 3 * 10**12)]
    curve = CpCurve.from_hops(hops, [3000, 3000])
    for x in (10**18, 10**20, 10**22):
        exact = get_amounts_out(x, hops)[-1]
        assert abs(curve.amount_out(x) - exact) <= max(2.0, exact * 1e-12)


# -- routing on the dev chain ------------------------------------------------------------------


def test_gas_is_priced_in_token_out(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    snap = snapshot_of(chain, devnet)
    usdc_per_wei = gas_rate(snap, tokens["WETH"], tokens["USDC"])
    assert usdc_per_wei is not None and 2900e6 / 1e18 < usdc_per_wei < 3100e6 / 1e18
    wbtc_per_wei = gas_rate(snap, tokens["WETH"], tokens["WBTC"])
    assert wbtc_per_wei is not None and 0.045e8 / 1e18 < wbtc_per_wei < 0.055e8 / 1e18
    assert gas_rate(snap, tokens["WETH"], tokens["WETH"]) == 1.0
    assert gas_rate(snap, tokens["WETH"], Token("X", "0x" + "33" * 20, 18)) is None


def test_small_order_goes_to_the_best_single_venue(chain: RpcClient,
                                                   devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet)
    snap = snapshot_of(chain, devnet)
    order = intent(tokens["WETH"], tokens["USDC"], 10**17)
    route = router_for(venues, devnet).route(order, snap, gas_price_wei=20 * GWEI)
    assert not route.is_split
    # Everything the venues offer, net of gas at 20 gwei: the router took the best.
    rate = gas_rate(snap, tokens["WETH"], tokens["USDC"])
    assert rate is not None
    nets = [q.amount_out - int(q.gas_estimate * 20 * GWEI * rate + 0.999999)
            for v in venues.values()
            for q in v.quote_candidates(order.token_in, order.token_out, order.amount_in, snap)]
    assert route.net_amount_out == max(nets)
    assert route.best_single_net_out == route.net_amount_out
    assert route.gas_cost_out is not None and route.gas_cost_out > 0
    assert len(route.candidates) == len(nets)
    assert route.skipped == ()
    # At zero gas price the gross best wins, which is where the output is largest.
    free = router_for(venues, devnet).route(order, snap, gas_price_wei=0)
    assert free.amount_out == max(c.amount_out for c in free.candidates)


def test_gas_decides_between_one_and_two_hops(chain: RpcClient, devnet: DevnetManifest) -> None:
    """WBTC->USDC: direct V2 pool vs the V3 two-hop path; at a high gas price the extra hop and
    extra legs do not pay."""
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet)
    snap = snapshot_of(chain, devnet)
    order = intent(tokens["WBTC"], tokens["USDC"], 10**6)  # 0.01 WBTC
    cheap = router_for(venues, devnet).route(order, snap, gas_price_wei=0)
    dear = router_for(venues, devnet).route(order, snap, gas_price_wei=500 * GWEI)
    assert not dear.is_split and len(dear.legs[0].path) == 2
    assert dear.gas_estimate <= cheap.gas_estimate
    assert cheap.amount_out >= dear.amount_out


def test_pinned_order_trades_only_on_its_venue(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet)
    snap = snapshot_of(chain, devnet)
    router = router_for(venues, devnet)
    big = 30 * 10**18  # large enough that the unpinned route splits
    assert router.route(intent(tokens["WETH"], tokens["USDC"], big), snap,
                        gas_price_wei=GWEI).is_split
    pinned = router.route(intent(tokens["WETH"], tokens["USDC"], big, venue="sushiswap-v2"),
                          snap, gas_price_wei=GWEI)
    assert pinned.venues == ("sushiswap-v2",) and not pinned.is_split
    assert {c.venue for c in pinned.candidates} == {"sushiswap-v2"}
    with pytest.raises(ValueError, match="pinned to venue 'curve'"):
        router.route(intent(tokens["WETH"], tokens["USDC"], big, venue="curve"), snap,
                     gas_price_wei=GWEI)
    with pytest.raises(ValueError, match="gas_price_wei"):
        router.route(intent(tokens["WETH"], tokens["USDC"], big), snap, gas_price_wei=-1)


def test_failing_aggregator_means_switch_venue(chain: RpcClient, devnet: DevnetManifest,
                                               zeroex: FakeZeroEx) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet, zeroex)
    snap = snapshot_of(chain, devnet)
    router = router_for(venues, devnet)
    order = intent(tokens["USDC"], tokens["WETH"], 2_000 * 10**6)
    healthy = router.route(order, snap, gas_price_wei=GWEI)
    assert "0x" in {c.venue for c in healthy.candidates}
    for mode, kind in (("5xx", "network"), ("429", "network"), ("slow", "network"),
                       ("garbage", "api"), ("no_liquidity", "unsupported")):
        with zeroex.failing(mode, delay=1.0):
            route = router.route(order, snap, gas_price_wei=GWEI)
        assert [(f.venue, f.kind) for f in route.skipped] == [("0x", kind)], mode
        assert "0x" not in route.venues and route.amount_out > 0
        assert zeroex.api_key not in " ".join(f.message for f in route.skipped)
    # Pinned to the failing aggregator, there is nothing else to switch to.
    with zeroex.failing("5xx"), pytest.raises(NoRouteNetworkError) as info:
        router.route(intent(order.token_in, order.token_out, order.amount_in, venue="0x"),
                     snap, gas_price_wei=GWEI)
    assert isinstance(info.value, NetworkError)
    with zeroex.failing("garbage"), pytest.raises(NoRouteError) as info2:
        router.route(intent(order.token_in, order.token_out, order.amount_in, venue="0x"),
                     snap, gas_price_wei=GWEI)
    assert isinstance(info2.value, ApiError) and info2.value.failures[0].venue == "0x"


def test_aggregator_route_executes(chain: RpcClient, devnet: DevnetManifest,
                                   zeroex: FakeZeroEx) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet, zeroex)
    snap = snapshot_of(chain, devnet)
    order = intent(tokens["USDC"], tokens["WETH"], 1_000 * 10**6, venue="0x")
    route = router_for(venues, devnet).route(order, snap, gas_price_wei=GWEI)
    assert route.venues == ("0x",)
    leg = route.legs[0]
    received, _ = execute(chain, venues["0x"], leg.quote, devnet.hot_wallet)
    assert received >= leg.quote.extra["min_buy_amount"]


def test_large_order_split_beats_best_single_and_executes(chain: RpcClient,
                                                          devnet: DevnetManifest,
                                                          zeroex: FakeZeroEx,
                                                          rich_hot_wallet: str) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet, zeroex)
    snap = snapshot_of(chain, devnet)
    order = intent(tokens["UNI"], tokens["WETH"], 20_000 * 10**18)  # ~$200k into $1M pools
    route = router_for(venues, devnet).route(order, snap, gas_price_wei=10 * GWEI)
    assert route.is_split and len(route.legs) >= 3
    assert {"uniswap-v2", "sushiswap-v2", "uniswap-v3"} <= set(route.venues)
    assert sum(leg.amount_in for leg in route.legs) == order.amount_in
    assert route.amount_out == sum(leg.amount_out for leg in route.legs)
    assert route.net_amount_out > route.best_single_net_out
    assert route.gain_vs_best_single_bps > 100  # more than 1 % better
    pools = [p for leg in route.legs for p in leg.quote.pools]
    assert len(pools) == len(set(pools)), "legs must not share a pool"
    weth_before = balance(chain, tokens["WETH"], devnet.hot_wallet)
    assert execute_route(chain, venues, route, devnet.hot_wallet) == route.amount_out
    assert balance(chain, tokens["WETH"], devnet.hot_wallet) == weth_before + route.amount_out


def test_split_with_v3_leg_delivers_every_quote(chain: RpcClient,
                                                devnet: DevnetManifest,
                                                rich_hot_wallet: str) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet)
    snap = snapshot_of(chain, devnet)
    order = intent(tokens["WETH"], tokens["USDC"], 60 * 10**18)
    route = router_for(venues, devnet).route(order, snap, gas_price_wei=10 * GWEI)
    assert route.is_split and "uniswap-v3" in route.venues
    assert route.net_amount_out > route.best_single_net_out
    assert execute_route(chain, venues, route, devnet.hot_wallet) == route.amount_out


def test_two_hop_uni_to_usdc(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venues = all_venues(chain, devnet)
    snap = snapshot_of(chain, devnet)
    route = router_for(venues, devnet).route(
        intent(tokens["UNI"], tokens["USDC"], 500 * 10**18), snap, gas_price_wei=GWEI)
    for leg in route.legs:
        assert [t.symbol for t in leg.path] == ["UNI", "WETH", "USDC"]
    assert {c.path for c in route.candidates} == {("UNI", "WETH", "USDC")}
    assert execute_route(chain, venues, route, devnet.hot_wallet) == route.amount_out


def _v2_paths(venues: dict[str, Venue], token_in: Token, token_out: Token
              ) -> list[tuple[UniswapV2Venue, tuple[Token, ...]]]:
    return [(v, p) for v in venues.values() if isinstance(v, UniswapV2Venue)
            for p in v.paths(token_in, token_out)]


SPLIT_PAIRS = [("WETH", "USDC"), ("USDC", "WETH"), ("WBTC", "USDC"), ("USDC", "WBTC"),
               ("UNI", "WETH"), ("WETH", "UNI"), ("UNI", "USDC"), ("WBTC", "WETH")]
GRID_STEPS = {1: 1, 2: 2000, 3: 150, 4: 40}


def brute_force(venues: dict[str, Venue], snap: MarketSnapshot, order: OrderIntent) -> int:
    paths = _v2_paths(venues, order.token_in, order.token_out)
    states = v2_states(snap)
    hops = [v.hops(p, states) for v, p in paths]
    fees = [[pool.fee_ppm for pool in v.pools_on(p)] for v, p in paths]

    def evaluate(amounts: Sequence[int]) -> int:
        total = 0
        for a, h, f in zip(amounts, hops, fees, strict=True):
            if a > 0:
                with contextlib.suppress(ValueError):  # a share so small a hop rounds to 0
                    total += get_amounts_out(a, h, f)[-1]
        return total

    _, best = grid_optimum(evaluate, len(paths), order.amount_in, GRID_STEPS[len(paths)])
    return best


def test_split_is_within_0_1_percent_of_brute_force(chain: RpcClient,
                                                    devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venues = {n: v for n, v in all_venues(chain, devnet).items() if isinstance(v, UniswapV2Venue)}
    snap = snapshot_of(chain, devnet)
    router = router_for(venues, devnet)  # type: ignore[arg-type]
    states = v2_states(snap)
    rng = random.Random(20240607)
    gaps = []
    for _ in range(16):
        a, b = rng.choice(SPLIT_PAIRS)
        token_in, token_out = tokens[a], tokens[b]
        first_venue, first_path = _v2_paths(venues, token_in, token_out)[0]  # type: ignore[arg-type]
        depth = first_venue.hops(first_path, states)[0][0]
        order = intent(token_in, token_out, int(depth * rng.uniform(0.01, 0.25)))
        route = router.route(order, snap, gas_price_wei=0)
        optimum = brute_force(venues, snap, order)  # type: ignore[arg-type]
        assert route.is_split, (a, b, order.amount_in)
        assert sum(leg.amount_in for leg in route.legs) == order.amount_in
        assert route.amount_out >= optimum * (1 - 1e-3), (a, b, route.amount_out, optimum)
        assert route.amount_out > route.best_single.amount_out
        gaps.append(route.amount_out / optimum - 1)
    # The closed form is the true optimum: never meaningfully below the grid's best point.
    assert min(gaps) > -1e-5, gaps
