"""The trading cycle end to end on the dev chain: real Uniswap, real signing, real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig, ReferenceFeedConfig
from dexpilot.execution.executor import ExecutorSettings
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import FillRow, OrderRow, OrderStatus, RiskDecisionRow, SignalRow
from dexpilot.state import BotState
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from tests.fakes.price_feed_server import FakePriceFeed
from tests.fixtures.chain import ANVIL_KEY_1, wallet_balances


def _push(chain: RpcClient, devnet: DevnetManifest, venue: str, pair: str, factor: float) -> None:
    """Move one pool's price by ``factor`` with a noise-trader swap (another market actor)."""
    sim = MarketSimulator(chain, devnet)
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = next(s for s in reader.snapshot(devnet.pool_refs()).pools
                if s.pool.venue == venue and s.pool.pair == pair)
    assert sim.push(snap, snap.price() * factor)


def test_profitable_arbitrage_is_executed_and_ledger_matches_chain(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest
) -> None:
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)  # WETH 2 % dearer on sushiswap
    before = wallet_balances(chain, devnet)

    report = run_cycle(runtime, "t1")

    assert report.signals >= 1 and report.intents == 2, report
    assert [e.status for e in report.executions] == [OrderStatus.FILLED] * 2, report.executions
    after = wallet_balances(chain, devnet)
    usdc = next(t for t in devnet.tokens if t.symbol == "USDC").address
    weth = next(t for t in devnet.tokens if t.symbol == "WETH").address
    with runtime.ledger.session(write=False) as session:
        fills = session.exec(select(FillRow)).all()
        orders = {o.id: o for o in session.exec(select(OrderRow)).all()}
    assert len(fills) == 2
    delta: dict[str, int] = {usdc: 0, weth: 0}
    gas = 0
    for fill in fills:
        delta[fill.token_in] -= fill.amount_in
        delta[fill.token_out] += fill.amount_out
        gas += (fill.gas_used or 0) * (fill.effective_gas_price or 0)
        assert orders[fill.order_id].status is OrderStatus.FILLED
        assert orders[fill.order_id].min_amount_out > 0
    approvals_gas = before["ETH"] - after["ETH"] - gas  # exact approvals cost gas too
    assert approvals_gas >= 0
    assert after["USDC"] - before["USDC"] == delta[usdc]
    assert after["WETH"] - before["WETH"] == delta[weth]
    assert delta[usdc] > 0, "the round trip must have made money in USDC"
    assert delta[weth] == 0, "inventory arbitrage ends flat in the middle token"
    assert runtime.state.state is BotState.RUNNING


def test_arbitrage_closes_the_gap_and_the_next_cycle_trades_nothing(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest
) -> None:
    """Each round trip (capped at max_trade) narrows the spread until it no longer pays."""
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.01)
    usdc = [wallet_balances(chain, devnet)["USDC"]]
    for i in range(20):
        report = run_cycle(runtime, f"c{i}")
        if not report.executions:
            break
        assert all(e.filled for e in report.executions), report.executions
        usdc.append(wallet_balances(chain, devnet)["USDC"])
        assert usdc[-1] > usdc[-2], "every round trip must end with more USDC"
    else:
        raise AssertionError("the arbitrage never closed the gap")
    assert len(usdc) >= 2, "the pushed price must have been arbitraged at least once"


def test_paused_bot_does_not_trade(runtime: TradingRuntime, chain: RpcClient,
                                   devnet: DevnetManifest) -> None:
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
    runtime.state.start()
    runtime.state.pause("operator pause", actor="test")
    report = run_cycle(runtime, "paused")
    assert report.skipped_reason == "bot is PAUSED"
    with runtime.ledger.session(write=False) as session:
        assert session.exec(select(OrderRow)).all() == []


def test_manipulated_pool_is_refused_by_the_reference_check(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest
) -> None:
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.10)  # 10 % off every other pool
    before = wallet_balances(chain, devnet)
    report = run_cycle(runtime, "manip")
    assert report.executions == []
    assert report.rejected, report
    with runtime.ledger.session(write=False) as session:
        rules = {d.rule for d in session.exec(select(RiskDecisionRow)).all() if not d.approved}
    assert rules & {"reference_price", "price_impact"}, rules
    assert wallet_balances(chain, devnet)["USDC"] == before["USDC"]


def _statistical(test_env: AppConfig) -> AppConfig:
    strategy = test_env.strategy.model_copy(update={"name": "statistical"})
    return test_env.model_copy(update={"strategy": strategy})


def _model_signal(created: datetime, horizon_s: int) -> SignalRow:
    return SignalRow(model="mean_reversion", pair="WETH/USDC", side="buy", edge_bps=80.0,
                     confidence=0.9, horizon_s=horizon_s, inputs_from=created - timedelta(hours=1),
                     inputs_to=created, created_at=created, payload={"z": -2.5})


def test_statistical_strategy_trades_a_fresh_stored_model_signal(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest
) -> None:
    rt = TradingRuntime.build(_statistical(test_env), HotWallet(ANVIL_KEY_1))
    try:
        rt.ledger.record_signals([_model_signal(datetime.now(UTC), 600)])
        weth_before = wallet_balances(chain, devnet)["WETH"]
        report = run_cycle(rt, "stat")
        assert report.intents >= 1
        assert report.executions and all(e.filled for e in report.executions), report
        assert wallet_balances(chain, devnet)["WETH"] > weth_before, "a buy signal buys the base"
    finally:
        rt.close()


def test_expired_model_signals_are_ignored(test_env: AppConfig) -> None:
    rt = TradingRuntime.build(_statistical(test_env), HotWallet(ANVIL_KEY_1))
    try:
        rt.ledger.record_signals([_model_signal(datetime.now(UTC) - timedelta(minutes=30), 60)])
        report = run_cycle(rt, "stale")
        assert report.intents == 0 and report.executions == []
    finally:
        rt.close()


def _with_feed(test_env: AppConfig, url: str) -> AppConfig:
    return test_env.model_copy(update={"reference_feed": ReferenceFeedConfig(url=url)})


def _feed_prices(feed: FakePriceFeed, weth_usd: float) -> None:
    for feed_id, usd in (("ethereum", weth_usd), ("bitcoin", 60_000.0), ("usd-coin", 1.0),
                         ("uniswap", 10.0)):
        feed.set_price(feed_id, usd)


def test_external_reference_feed_refuses_trades_far_from_it(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest, price_feed: FakePriceFeed
) -> None:
    """The pools agree with each other (2 % gap) but the feed says WETH is 2,000 USD."""
    _feed_prices(price_feed, weth_usd=2_000.0)
    rt = TradingRuntime.build(_with_feed(test_env, price_feed.url), HotWallet(ANVIL_KEY_1))
    try:
        _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
        report = run_cycle(rt, "feed-far")
        assert report.executions == [] and "reference_price" in report.rejected, report
        assert price_feed.requests, "the feed was asked"
    finally:
        rt.close()


@pytest.mark.parametrize("feed_up", [True, False])
def test_reference_feed_in_agreement_or_down_lets_the_arbitrage_trade(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest, price_feed: FakePriceFeed,
    feed_up: bool,
) -> None:
    """A feed that agrees with the pools lets the trade through; a dead feed (no cached
    value) is replaced by the pools' median, which ignores the one pushed pool."""
    _feed_prices(price_feed, weth_usd=3_000.0)
    rt = TradingRuntime.build(_with_feed(test_env, price_feed.url), HotWallet(ANVIL_KEY_1))
    try:
        _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
        if feed_up:
            report = run_cycle(rt, "feed-ok")
        else:
            with price_feed.failing("500"):
                report = run_cycle(rt, "feed-down")
        assert [e.filled for e in report.executions] == [True, True], report
        assert price_feed.requests, "the feed was asked"
    finally:
        rt.close()


def test_a_stuck_swap_ends_the_cycle_and_the_next_cycle_settles_it_once(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest
) -> None:
    settings = ExecutorSettings(receipt_timeout_s=0.3, max_replacements=0, poll_interval_s=0.02)
    rt = TradingRuntime.build(test_env, HotWallet(ANVIL_KEY_1), executor_settings=settings)
    try:
        _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
        _approve_everything(chain, devnet)  # so only the swap itself waits for a block
        chain.request("evm_setAutomine", [False])
        try:
            stuck = run_cycle(rt, "stuck")
        finally:
            chain.request("evm_setAutomine", [True])
        assert [e.status for e in stuck.executions] == [OrderStatus.SUBMITTED], stuck
        assert "not mined" in (stuck.executions[0].error or "")
        assert rt.state.state is BotState.RUNNING
        chain.request("evm_mine")
        settled = run_cycle(rt, "next")
        assert [(r.client_order_id, r.status) for r in settled.reconciled] == [
            (stuck.executions[0].client_order_id, OrderStatus.FILLED)]
        with rt.ledger.session(write=False) as session:
            fills = session.exec(select(FillRow)).all()
            orders = session.exec(select(OrderRow)).all()
        stuck_id = stuck.executions[0].client_order_id
        stuck_order = next(o for o in orders if o.client_order_id == stuck_id)
        assert [f.order_id for f in fills].count(stuck_order.id) == 1
    finally:
        rt.close()


def _approve_everything(chain: RpcClient, devnet: DevnetManifest) -> None:
    erc20 = chain.w3.eth.contract(abi=load_artifact("ERC20").abi)
    for token in devnet.tokens:
        for venue in devnet.venues:
            assert venue.router is not None
            data = erc20.encode_abi("approve", [venue.router, 10**30])
            tx = chain.request("eth_sendTransaction", [{"from": devnet.hot_wallet,
                                                        "to": token.address, "data": data}])
            assert int(chain.wait_for_receipt(tx, timeout=10)["status"], 16) == 1


def test_a_cycle_that_finds_trading_recovers_it_after_reconciling(
    runtime: TradingRuntime, chain: RpcClient
) -> None:
    """A trader killed mid-trade leaves TRADING; the next cycle (which holds the wallet, so
    that trader is gone) reconciles first, records TRADING -> RUNNING by `recovery`, trades."""
    runtime.state.start()
    runtime.state.begin_trading("cycle of a process that was killed")

    report = run_cycle(runtime, "after-kill")

    assert report.skipped_reason is None and runtime.state.state is BotState.RUNNING
    # first start, the killed cycle's TRADING, the recovery (then whatever this cycle traded)
    recovery = runtime.ledger.transitions(runtime.config.env)[2]
    assert (recovery.from_state, recovery.to_state, recovery.actor) == (
        "TRADING", "RUNNING", "recovery")
    assert "cycle after-kill found the bot TRADING" in recovery.reason
    assert "(0 settled)" in recovery.reason
    # A cycle of a bot that is not TRADING records nothing of the kind.
    run_cycle(runtime, "next")
    assert [t.actor for t in runtime.ledger.transitions(runtime.config.env)].count(
        "recovery") == 1
