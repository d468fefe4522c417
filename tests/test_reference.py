"""The reference price a traded pool cannot move: the pools' oracle maths, which sources count
for which pool, the check's verdicts, and duplicate pools refused at config load.

Pure: snapshots are built by hand, no chain (the live cycle is `test_reference_price.py`).
Prices follow `test_risk`: WETH 2500 USDC.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest
from eth_utils import to_checksum_address
from pydantic import ValidationError

from dexpilot.config import AppConfig
from dexpilot.market.pools import (
    MarketSnapshot,
    PoolKind,
    PoolRef,
    PoolSnapshot,
    V2Oracle,
    V2State,
    V3Oracle,
    V3State,
)
from dexpilot.market.reference import (
    Q112,
    PriceReference,
    ReferenceSource,
    SourceKind,
    V2TwapHistory,
    reference_for,
    v2_average_price0,
    v2_cumulatives_at,
    v3_mean_tick,
)
from dexpilot.money import Token
from tests.test_risk import (
    ETH,
    USDC,
    WBTC,
    WETH,
    assert_approved,
    assert_rejected,
    context,
    engine,
    proposal,
)

WINDOW = 600
NOW = 1_800_000_000
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
C = "0x" + "c3" * 20
D = "0x" + "d4" * 20


# -- the pools' oracles, by hand --------------------------------------------------------------


def test_v2_counterfactual_cumulatives_match_hand_computed_values() -> None:
    # reserves 4 : 10, so price0 = 10/4 = 2.5 = 5 * 2**111 in UQ112x112, price1 = 0.4.
    oracle = V2Oracle(price0_cumulative_last=7, price1_cumulative_last=11,
                      block_timestamp_last=1_000)
    c0, c1 = v2_cumulatives_at(oracle, V2State(4, 10), 1_100)
    assert c0 == 7 + 100 * 5 * 2**111
    assert c1 == 11 + 100 * ((4 * 2**112) // 10)  # the pair's own integer division
    # Nothing has accrued in the block the reserves were set in.
    assert v2_cumulatives_at(oracle, V2State(4, 10), 1_000) == (7, 11)


def test_v2_cumulatives_wrap_like_the_pair() -> None:
    # blockTimestampLast is uint32: 50 s before the wrap to 50 s after it is 100 s.
    oracle = V2Oracle(2**256 - 2**112, 0, 2**32 - 50)
    c0, _ = v2_cumulatives_at(oracle, V2State(4, 10), 2**32 + 50)
    assert c0 == 249 * 2**112  # 2**256 - 2**112 + 250 * 2**112, wrapped at 2**256
    # ... and the average across the wrap still comes out exact.
    assert v2_average_price0(2**256 - 2**112, c0, 100) == 2.5


def test_v2_twap_weights_each_price_by_its_time_and_ignores_this_blocks_push() -> None:
    pool = PoolRef("v2", PoolKind.V2, A, WETH, USDC, 3000)
    history = V2TwapHistory()
    # t=0: reserves 4 : 10 (price 2.5 raw), accumulators at 0 since t=0.
    history.record(_snap(NOW, PoolSnapshot(pool, V2State(4, 10), 1, V2Oracle(0, 0, NOW))), WINDOW)
    # t=300: a swap to 2 : 20 (price 10); the pair added 2.5 * 300 s before updating.
    swapped = V2Oracle(300 * 5 * 2**111, 0, NOW + 300)
    at_600 = PoolSnapshot(pool, V2State(2, 20), 2, swapped)
    assert history.price0(at_600, NOW + 600, WINDOW) == (2.5 * 300 + 10 * 300) / 600  # 6.25
    # t=600: someone pushes the pool to 1 : 1000 in this very block: the pair accrued 10 for
    # the 300 s before, and nothing of the pushed price yet.
    pushed = PoolSnapshot(pool, V2State(1, 1000), 3,
                          V2Oracle(300 * 5 * 2**111 + 300 * 10 * Q112, 0, NOW + 600))
    assert history.price0(pushed, NOW + 600, WINDOW) == 6.25
    # Younger than the window: no TWAP, not a shorter one.
    assert history.price0(at_600, NOW + 599, WINDOW) is None


def test_v2_history_keeps_spaced_observations_and_forgets_old_ones() -> None:
    pool = PoolRef("v2", PoolKind.V2, A, WETH, USDC, 3000)
    history = V2TwapHistory()

    def at(t: int) -> MarketSnapshot:
        return _snap(t, PoolSnapshot(pool, V2State(4, 10), 1, V2Oracle(0, 0, NOW)))

    for t in range(NOW, NOW + 3 * WINDOW, 5):  # a cycle every 5 s for three windows
        history.record(at(t), WINDOW)
    kept = [o.timestamp - NOW for o in history.observations[A.lower()]]
    spacing = WINDOW // V2TwapHistory.GRANULARITY
    assert all(b - a >= spacing for a, b in itertools.pairwise(kept))
    assert (3 * WINDOW - 5) - kept[0] < 2 * WINDOW + spacing  # none much older than 2 windows
    last = at(NOW + 3 * WINDOW)
    assert history.price0(last.pools[0], last.block_timestamp, WINDOW) == 2.5
    # A chain that went back in time (a reorg, a reverted test chain) starts over.
    history.record(at(NOW), WINDOW)
    assert [o.timestamp for o in history.observations[A.lower()]] == [NOW]


@pytest.mark.parametrize(("cumulatives", "tick"), [
    ((0, 1_200), 2), ((0, -1_200), -2),
    ((0, -601), -2),  # OracleLibrary: -1.0016 truncates to -1, then rounds down to -2
    ((5_000, 5_599), 0),
])
def test_v3_mean_tick_rounds_like_oracle_library(cumulatives: tuple[int, int], tick: int) -> None:
    assert v3_mean_tick(V3Oracle(600, cumulatives)) == tick


# -- which sources count -----------------------------------------------------------------------


def _snap(timestamp: int, *pools: PoolSnapshot) -> MarketSnapshot:
    return MarketSnapshot(block_number=1, block_timestamp=timestamp, chain_id=1, pools=pools)


def _v2(address: str, usdc_per_weth: float, venue: str = "v2") -> PoolSnapshot:
    ref = PoolRef(venue, PoolKind.V2, address, WETH, USDC, 3000)
    return PoolSnapshot(ref, V2State(1_000 * ETH, int(1_000 * usdc_per_weth * 10**6)), 1)


def _tick(usdc_per_weth: float) -> int:
    return math.floor(math.log(usdc_per_weth * 10**6 / 10**18) / math.log(1.0001))


def _v3(address: str, spot: float, twap: float | None, fee: int = 500) -> PoolSnapshot:
    ref = PoolRef("v3", PoolKind.V3, address, WETH, USDC, fee)
    sqrt_x96 = int(math.sqrt(spot * 10**6 / 10**18) * 2**96)
    oracle = None if twap is None else V3Oracle(WINDOW, (0, _tick(twap) * WINDOW))
    return PoolSnapshot(ref, V3State(sqrt_x96, _tick(spot), 10**20), 1, oracle)


def _ref(snapshot: MarketSnapshot, *traded: str, base: Token = WETH, counter: Token = USDC,
         **kwargs: Any) -> PriceReference:
    return reference_for(snapshot, base, counter, traded, window_s=WINDOW,
                         hubs=kwargs.pop("hubs", (WETH, USDC)), **kwargs)


def _prices(ref: PriceReference) -> dict[str, float]:
    return {s.label.split()[0] + " " + s.label.split()[-1]: round(s.price, 1)
            for s in ref.sources}


def test_the_traded_pools_spot_price_is_never_a_source() -> None:
    snapshot = _snap(NOW, _v2(A, 2500.0), _v2(B, 3250.0), _v3(C, 2500.0, twap=2500.0))
    # Pool B (pushed 30 %) is priced by A's spot and C's TWAP, never by itself.
    ref = _ref(snapshot, B)
    assert ref.pools == (f"v2 WETH/USDC {B}",)
    assert _prices(ref) == {f"spot {A}": 2500.0, f"twap {C}": pytest.approx(2500.0, rel=2e-4)}
    # Pool C has a TWAP: that (not its spot) is C's one source, even when trading on C.
    ref = _ref(snapshot, C)
    assert {s.kind for s in ref.sources} == {SourceKind.SPOT, SourceKind.TWAP}
    assert len(ref.sources) == 3 and sum(s.label.endswith(C) for s in ref.sources) == 1
    # A lone pool without a TWAP has no source at all; a lone pool with one has its TWAP.
    assert _ref(_snap(NOW, _v2(A, 2500.0)), A).sources == ()
    lone = _ref(_snap(NOW, _v3(C, 3250.0, twap=2500.0)), C)
    assert [s.kind for s in lone.sources] == [SourceKind.TWAP]
    assert lone.sources[0].price == pytest.approx(2500.0, rel=2e-4)


def test_a_pool_listed_twice_counts_once() -> None:
    pushed = _v2(B, 3250.0)
    snapshot = _snap(NOW, _v2(A, 2500.0), pushed, pushed)
    assert [s.label for s in _ref(snapshot, A).sources] == [f"spot v2 WETH/USDC {B}"]
    with pytest.raises(ValueError, match="listed twice"):
        PriceReference("WETH", "USDC", (A,), (ReferenceSource(SourceKind.SPOT, "x", 1.0),) * 2)


def test_prices_are_oriented_as_the_trade_sells() -> None:
    snapshot = _snap(NOW, _v2(A, 2500.0), _v2(B, 2500.0))
    (usdc_in_weth,) = _ref(snapshot, A, base=USDC, counter=WETH).sources
    assert usdc_in_weth.price == pytest.approx(1 / 2500.0)


def test_a_missing_direct_pair_is_crossed_through_the_hub() -> None:
    wbtc_usdc = PoolSnapshot(PoolRef("v2", PoolKind.V2, D, WBTC, USDC, 3000),
                             V2State(10 * 10**8, 650_000 * 10**6), 1)  # 65,000: pushed 30 %
    wbtc_weth = PoolSnapshot(PoolRef("v2", PoolKind.V2, A, WBTC, WETH, 3000),
                             V2State(10 * 10**8, 200 * ETH), 1)  # 20 WETH per WBTC
    snapshot = _snap(NOW, wbtc_usdc, wbtc_weth, _v2(B, 2500.0), _v3(C, 2600.0, twap=2500.0))
    ref = _ref(snapshot, D, base=WBTC, counter=USDC)
    (cross,) = ref.sources
    assert cross.kind is SourceKind.CROSS and cross.label.startswith("cross via WETH: ")
    assert cross.price == pytest.approx(20 * 2500.0, rel=2e-4)  # median(B spot, C TWAP)
    # With another direct pool for the pair, no cross is taken.
    other = PoolSnapshot(replace(wbtc_usdc.pool, address=B.replace("b2", "e5")),
                         V2State(10 * 10**8, 500_000 * 10**6), 1)
    assert [s.kind for s in _ref(replace(snapshot, pools=(*snapshot.pools, other)), D,
                                 base=WBTC, counter=USDC).sources] == [SourceKind.SPOT]


# -- the check: one place decides --------------------------------------------------------------


def _sell(pool_price: float, ref: PriceReference) -> Any:
    ctx = context(balances={"USDC": 0, "WETH": ETH})
    return engine().evaluate(replace(proposal(ETH // 5, WETH, USDC), pool_price=pool_price,
                                     reference=ref), ctx)


def test_a_lone_pool_is_not_its_own_reference() -> None:
    decision = _sell(3250.0, _ref(_snap(NOW, _v2(A, 3250.0)), A))
    assert_rejected(decision, "reference_price", f"no independent reference for pool v2 "
                    f"WETH/USDC {A}", "found 0 source(s)", "(none)", "min_reference_sources is 2")
    # Its own TWAP is one source: not two ...
    lone = _ref(_snap(NOW, _v3(C, 3250.0, twap=2500.0)), C)
    assert_rejected(_sell(3250.0, lone), "reference_price", "no independent reference",
                    "found 1 source(s)", f"twap 600 s v3 WETH/USDC {C}")
    # ... but where one is enough, it catches the push the pool's spot price cannot.
    decision = engine(min_reference_sources=1).evaluate(
        replace(proposal(ETH // 5, WETH, USDC), pool_price=3250.0, reference=lone),
        context(balances={"USDC": 0, "WETH": ETH}))
    assert_rejected(decision, "reference_price", "pool price 3250 USDC per WETH", f"on pool v3 "
                    f"WETH/USDC {C}", "bps from the reference 2499", "median of 1 on-chain "
                    "source(s)", "twap 600 s", "max_reference_deviation_bps 300")
    assert decision.details["deviation_bps"] == pytest.approx(3000, abs=2)


def test_two_pools_the_honest_one_trades_and_the_pushed_one_is_refused() -> None:
    honest, pushed = _v3(A, 2500.0, twap=2500.0), _v3(B, 3250.0, twap=2500.0, fee=3000)
    snapshot = _snap(NOW, honest, pushed)
    assert_approved(_sell(2500.0, _ref(snapshot, A)))
    decision = _sell(3250.0, _ref(snapshot, B))
    assert_rejected(decision, "reference_price", f"pool v3 WETH/USDC {B}",
                    "median of 2 on-chain source(s)", "max_reference_deviation_bps 300")
    assert decision.details["deviation_bps"] == pytest.approx(3000, abs=2)
    assert decision.details["reference_sources"].count("twap") == 2


def test_the_median_of_three_outvotes_a_pushed_peer() -> None:
    snapshot = _snap(NOW, _v2(A, 2500.0), _v2(B, 3250.0), _v2(D, 2510.0), _v3(C, 2490.0, None))
    assert_approved(_sell(2500.0, _ref(snapshot, A)))  # B's spot is one vote of three


def test_the_feed_alone_is_enough_and_decides() -> None:
    feed = {"WETH": 2000.0, "USDC": 1.0}
    alone = _ref(_snap(NOW, _v2(A, 2500.0)), A, feed=feed)
    decision = _sell(2500.0, alone)
    assert_rejected(decision, "reference_price", "2500 bps", "reference 2000",
                    "the reference feed: feed")
    assert_approved(_sell(2010.0, alone))
    # A feed without one of the tokens is no source.
    assert _ref(_snap(NOW, _v2(A, 2500.0)), A, feed={"WETH": 2000.0}).sources == ()


def test_a_reference_must_price_what_the_trade_sells() -> None:
    ref = _ref(_snap(NOW, _v2(A, 2500.0), _v2(B, 2500.0)), A)
    with pytest.raises(ValueError, match="the reference prices WETH in USDC, the trade sells "
                                         "USDC for WETH"):
        replace(proposal(), reference=ref)


# -- duplicate pools at config load ------------------------------------------------------------


def _config(pools: list[dict[str, Any]]) -> dict[str, Any]:
    addr = {s: "0x" + c * 40 for s, c in (("WETH", "1"), ("USDC", "2"), ("F1", "3"), ("F2", "4"),
                                          ("R1", "5"), ("R2", "6"), ("M", "7"), ("A", "8"),
                                          ("B", "9"))}
    return {
        "env": "test",
        "chain": {"chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"], "multicall": addr["M"],
                  "weth": "WETH"},
        "tokens": [{"symbol": "WETH", "address": addr["WETH"], "decimals": 18},
                   {"symbol": "USDC", "address": addr["USDC"], "decimals": 6}],
        "venues": [{"name": "v2a", "kind": "uniswap_v2", "factory": addr["F1"],
                    "router": addr["R1"]},
                   {"name": "v2b", "kind": "uniswap_v2", "factory": addr["F2"],
                    "router": addr["R2"]}],
        "pools": pools,
        "wallets": {"hot": addr["A"], "cold": addr["B"]},
        "risk": {"max_trade_quote": 1, "max_daily_volume_quote": 1, "working_capital_quote": 1,
                 "daily_loss_limit_quote": 1, "max_exposure_per_token_quote": 1,
                 "max_total_exposure_quote": 1, "token_allowlist": ["WETH", "USDC"]},
        "strategy": {"quote_token": "USDC"},
    }


def _pool(venue: str, address: str) -> dict[str, Any]:
    return {"venue": venue, "kind": "v2", "address": address, "token0": "WETH",
            "token1": "USDC", "fee_ppm": 3000}


POOL_1 = to_checksum_address("0x" + "ab" * 20)
POOL_2 = to_checksum_address("0x" + "cd" * 20)
POOL_3 = to_checksum_address("0x" + "ef" * 20)


def test_distinct_pools_load() -> None:
    config = AppConfig.model_validate(_config([_pool("v2a", POOL_1), _pool("v2b", POOL_2)]))
    assert config.risk.min_reference_sources == 2
    assert config.risk.reference_twap_window_s == 600


@pytest.mark.parametrize(("pools", "message"), [
    ([_pool("v2a", POOL_1), _pool("v2b", POOL_1)],
     f"pools[1].address: {POOL_1} is already listed as pools[0]"),
    ([_pool("v2a", POOL_1), _pool("v2b", POOL_2), {**_pool("v2a", POOL_3), "token0": "USDC",
                                                    "token1": "WETH"}],
     f"pools[2].address: {POOL_3}: pools[0] is already the USDC/WETH pool with fee 3000 ppm on "
     f"venue 'v2a'"),
])
def test_duplicate_pools_are_refused_at_load(pools: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AppConfig.model_validate(_config(pools))
    assert message in str(info.value)


@pytest.mark.parametrize(("field", "value"), [
    ("min_reference_sources", 0), ("reference_twap_window_s", 10),
    ("reference_twap_window_s", 86_401),
])
def test_reference_limits_are_validated(field: str, value: int) -> None:
    data = _config([_pool("v2a", POOL_1)])
    data["risk"][field] = value
    with pytest.raises(ValidationError, match=field):
        AppConfig.model_validate(data)
