"""The reference price through the live trading cycle on the dev chain: a pool pushed 30 % off
is refused by ``reference_price`` with nothing sent, whether it has peers, one peer, or only
its own TWAP; a token with no independent source is not traded at all.

The pushes are another market actor's swaps (``MarketSimulator``), mined before the cycle reads
its snapshot: the situation right after a manipulation, when the pool's spot price is off and
its time-weighted price is not yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig, PoolConfig
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import RiskDecisionRow, SignalRow
from dexpilot.market.pools import V2Oracle, V3Oracle
from dexpilot.trading.cycle import CycleReport, TradingRuntime, run_cycle
from tests.fixtures.chain import ANVIL_KEY_1, wallet_balances

pytestmark = pytest.mark.chain


def _pool(config: AppConfig, venue: str, pair: str, fee_ppm: int = 3000) -> PoolConfig:
    return next(p for p in config.pools if p.venue == venue and f"{p.token0}/{p.token1}" == pair
                and p.fee_ppm == fee_ppm)


def _weth_usdc_only_on(config: AppConfig, *pools: PoolConfig) -> list[PoolConfig]:
    """``pools`` as the only WETH/USDC pools, with the WBTC/USDC and UNI/WETH pools that
    value wallet A's other holdings but make no other path between WETH and USDC."""
    others = [p for p in config.pools
              if {p.token0, p.token1} in ({"WBTC", "USDC"}, {"UNI", "WETH"})]
    return [*pools, *others]


def _variant(config: AppConfig, *, pools: list[PoolConfig] | None = None,
             strategy: str | None = None, **risk: Any) -> AppConfig:
    update: dict[str, Any] = {"risk": config.risk.model_copy(update=risk)}
    if pools is not None:
        update["pools"] = pools
    if strategy is not None:
        update["strategy"] = config.strategy.model_copy(update={"name": strategy})
    return config.model_copy(update=update)


@pytest.fixture
def build(test_env: AppConfig) -> Iterator[Any]:
    built: list[TradingRuntime] = []

    def make(config: AppConfig) -> TradingRuntime:
        built.append(TradingRuntime.build(config, HotWallet(ANVIL_KEY_1)))
        return built[-1]

    try:
        yield make
    finally:
        for rt in built:
            rt.close()


def _push(chain: RpcClient, devnet: DevnetManifest, address: str, factor: float) -> None:
    """Move one pool's price (token0 in token1) by ``factor`` with a noise trader's swap."""
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = reader.snapshot(devnet.pool_refs()).pool(address)
    assert MarketSimulator(chain, devnet).push(snap, snap.price() * factor)
    after = reader.snapshot([snap.pool]).pools[0].price()
    assert after / snap.price() == pytest.approx(factor, rel=0.01)


def _wallet(chain: RpcClient, devnet: DevnetManifest) -> dict[str, int]:
    """Wallet A's nonce and balances: what a trade that was never sent leaves unchanged."""
    nonce = int(chain.request("eth_getTransactionCount", [devnet.hot_wallet, "latest"]), 16)
    return {**wallet_balances(chain, devnet), "nonce": nonce}


def _signal(rt: TradingRuntime, side: str, pair: str = "WETH/USDC") -> None:
    now = datetime.now(UTC)
    rt.ledger.record_signals([SignalRow(
        model="mean_reversion", pair=pair, side=side, edge_bps=80.0, confidence=0.9,
        horizon_s=3600, inputs_from=now - timedelta(hours=1), inputs_to=now, created_at=now,
        payload={})])


def _refusals(rt: TradingRuntime) -> list[RiskDecisionRow]:
    with rt.ledger.session(write=False) as session:
        return [d for d in session.exec(select(RiskDecisionRow)).all() if not d.approved]


def _reference_refusal(rt: TradingRuntime, report: CycleReport) -> RiskDecisionRow:
    assert report.executions == [] and "reference_price" in report.rejected, report
    (row,) = [d for d in _refusals(rt) if d.rule == "reference_price"]
    return row


# -- the snapshot carries the pools' oracles ---------------------------------------------------


def test_the_snapshot_reads_every_pools_oracle_in_the_same_call(
    chain: RpcClient, devnet: DevnetManifest
) -> None:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    trips = chain.round_trips
    snap = reader.snapshot(devnet.pool_refs(), twap_window_s=600)
    assert chain.round_trips == trips + 1  # the oracles ride in the pools' multicall
    kinds = {p.pool.kind.value: type(p.oracle) for p in snap.pools}
    assert kinds == {"v2": V2Oracle, "v3": V3Oracle}
    assert all(p.oracle is None for p in reader.snapshot(devnet.pool_refs()).pools)
    # The dev market's V3 observations go back a day; further back, observe() reverts "OLD":
    # no TWAP from those pools, and the snapshot is still read.
    old = reader.snapshot(devnet.pool_refs(), twap_window_s=3 * 86_400)
    assert [p.oracle for p in old.pools if p.pool.kind.value == "v3"] == [None] * 4
    assert [s.state for s in old.pools] == [s.state for s in snap.pools]


# -- a pushed pool ---------------------------------------------------------------------------


def test_a_pool_pushed_30_percent_off_its_peers_is_refused_with_nothing_sent(
    test_env: AppConfig, build: Any, chain: RpcClient, devnet: DevnetManifest
) -> None:
    rt = build(test_env)
    pushed = _pool(test_env, "sushiswap-v2", "WETH/USDC").address
    _push(chain, devnet, pushed, 1.30)
    before = _wallet(chain, devnet)

    row = _reference_refusal(rt, run_cycle(rt, "pushed-peers"))

    assert pushed in row.reason and "bps from the reference" in row.reason, row.reason
    assert row.details["deviation_bps"] > 2_000
    assert row.details["reference_source_count"] >= 2
    assert pushed not in row.details["reference_sources"]  # never its own spot price
    assert _wallet(chain, devnet) == before


def test_a_lone_pool_is_refused_by_its_own_twap_when_pushed(
    test_env: AppConfig, build: Any, chain: RpcClient, devnet: DevnetManifest
) -> None:
    """The only pool configured for WETH: its spot price cannot vouch for itself; its TWAP,
    which the push in an earlier block has not moved, catches it."""
    lone = _pool(test_env, "uniswap-v3", "WETH/USDC", 500)
    rt = build(_variant(test_env, pools=_weth_usdc_only_on(test_env, lone),
                        strategy="statistical", min_reference_sources=1))
    _signal(rt, "buy")
    _push(chain, devnet, lone.address, 0.70)  # WETH 30 % cheap: a buy would take the bait
    before = _wallet(chain, devnet)

    row = _reference_refusal(rt, run_cycle(rt, "pushed-lone"))

    assert f"on pool uniswap-v3 WETH/USDC {lone.address}" in row.reason, row.reason
    assert "median of 1 on-chain source(s): twap 600 s" in row.reason
    assert row.details["deviation_bps"] > 2_000
    assert _wallet(chain, devnet) == before


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_with_two_pools_the_honest_one_trades_and_the_pushed_one_is_refused(
    test_env: AppConfig, build: Any, chain: RpcClient, devnet: DevnetManifest, side: str
) -> None:
    """WETH 30 % dearer on the 0.3 % pool: a buy goes to the honest 0.05 % pool and trades (its
    reference is not dragged halfway to the pushed price); a sell goes to the pushed pool and
    is refused."""
    honest = _pool(test_env, "uniswap-v3", "WETH/USDC", 500)
    pushed = _pool(test_env, "uniswap-v3", "WETH/USDC", 3000)
    rt = build(_variant(test_env, pools=_weth_usdc_only_on(test_env, honest, pushed),
                        strategy="statistical"))
    _signal(rt, side)
    _push(chain, devnet, pushed.address, 1.30)
    before = _wallet(chain, devnet)

    report = run_cycle(rt, f"two-{side}")

    if side == "buy":
        assert [e.filled for e in report.executions] == [True], report
        with rt.ledger.session(write=False) as session:
            (decision,) = session.exec(select(RiskDecisionRow)).all()
        assert decision.approved, decision.reason
        after = _wallet(chain, devnet)
        assert after["WETH"] > before["WETH"] and after["nonce"] > before["nonce"]
    else:
        row = _reference_refusal(rt, report)
        assert pushed.address in row.reason and honest.address not in row.details[
            "reference_pools"], row.reason
        assert row.details["reference_source_count"] == 2  # both pools' TWAPs
        assert _wallet(chain, devnet) == before


# -- no independent source -------------------------------------------------------------------


def test_a_token_with_one_pool_and_no_other_source_is_not_traded(
    test_env: AppConfig, build: Any, chain: RpcClient, devnet: DevnetManifest
) -> None:
    lone = _pool(test_env, "uniswap-v3", "WETH/USDC", 500)
    rt = build(_variant(test_env, pools=_weth_usdc_only_on(test_env, lone),
                        strategy="statistical"))
    _signal(rt, "buy")
    before = _wallet(chain, devnet)

    row = _reference_refusal(rt, run_cycle(rt, "lone"))

    assert row.reason.startswith(
        f"reference_price: no independent reference for pool uniswap-v3 WETH/USDC "
        f"{lone.address}: found 1 source(s)"), row.reason
    assert f"(twap 600 s uniswap-v3 WETH/USDC {lone.address})" in row.reason
    assert "min_reference_sources is 2" in row.reason
    assert _wallet(chain, devnet) == before


def test_a_lone_v2_pool_has_no_source_until_its_twap_has_a_window_of_history(
    test_env: AppConfig, build: Any, chain: RpcClient, devnet: DevnetManifest
) -> None:
    """A V2 pair keeps no history: the runtime's own earlier observation is the start of its
    TWAP. Before one window has passed there is nothing; after it, the TWAP is one source."""
    lone = _pool(test_env, "uniswap-v2", "WETH/USDC")
    rt = build(_variant(test_env, pools=_weth_usdc_only_on(test_env, lone),
                        strategy="statistical", min_reference_sources=1))
    _signal(rt, "buy")
    before = _wallet(chain, devnet)
    row = _reference_refusal(rt, run_cycle(rt, "v2-cold"))
    assert "found 0 source(s) the traded pool cannot move (none)" in row.reason, row.reason
    assert _wallet(chain, devnet) == before

    # One TWAP window later (the chain's clock; the signal is still within its horizon) the
    # pool's TWAP exists and, the pool being where it was, the trade goes through.
    chain.request("evm_increaseTime", [601])
    chain.request("evm_mine")
    report = run_cycle(rt, "v2-warm")
    assert [e.filled for e in report.executions] == [True], (report, _refusals(rt)[-1].reason)
