"""The daily loss limit is fed from the ledger's realized PnL of the day (``dexpilot.ledger.pnl``)
in live, paper and backtest alike, and it stops a live session that loses money."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from dexpilot.backtest import BacktestConfig, default_limits, run_backtest, synthetic
from dexpilot.backtest.fills import token_for
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import (
    Ledger,
    OrderRow,
    OrderStatus,
    RiskDecisionRow,
    SignalRow,
    TradeMode,
    TxStatus,
)
from dexpilot.ledger.pnl import Flow, realized_pnl, realized_pnl_today, traded_today_quote
from dexpilot.market.valuation import quote_prices
from dexpilot.money import Token
from dexpilot.risk.checks import quote_value
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from tests.fixtures.chain import ANVIL_KEY_1, pending_nonce, wallet_balances

USDC = Token("USDC", "0x" + "1" * 40, 6)
WETH = Token("WETH", "0x" + "2" * 40, 18)
WBTC = Token("WBTC", "0x" + "3" * 40, 8)
PRICES = {"USDC": 1.0, "WETH": 3000.0, "WBTC": 60_000.0}
WALLET = "0x" + "a" * 40


# -- the pure definition ----------------------------------------------------------------------


def test_a_round_trip_realises_its_quote_result_whatever_the_middle_price() -> None:
    legs = [Flow(USDC, 3_000_000_000, WETH, 10**18), Flow(WETH, 10**18, USDC, 3_010_000_000)]
    for weth in (1.0, 3000.0, 99_999.0):
        pnl = realized_pnl(legs, {**PRICES, "WETH": weth}, USDC)
        assert (pnl.trading_quote, pnl.realized_quote, pnl.fills) == (10_000_000, 10_000_000, 2)


def test_a_buy_is_marked_at_the_cycle_price_and_gas_is_a_loss() -> None:
    buy = [Flow(USDC, 3_000_000_000, WETH, 10**18)]  # 1 WETH for 3,000 USDC
    assert realized_pnl(buy, PRICES, USDC).realized_quote == 0
    assert realized_pnl(buy, {**PRICES, "WETH": 2900.0}, USDC).realized_quote == -100_000_000
    # 0.001 ETH of gas at 3,000 USDC: 3 USDC more lost, with the gas token priced as WETH.
    with_gas = realized_pnl(buy, {**PRICES, "WETH": 2900.0}, USDC, gas_wei=10**15, native=WETH)
    assert (with_gas.gas_quote, with_gas.realized_quote) == (2_900_000, -102_900_000)
    assert realized_pnl([], PRICES, USDC, gas_wei=10**15, native=WETH,
                        native_price=2000.0).realized_quote == -2_000_000


def test_tokens_without_a_price_count_as_zero_and_are_named() -> None:
    pnl = realized_pnl([Flow(USDC, 600_000_000, WBTC, 10**6)], {"USDC": 1.0}, USDC,
                       gas_wei=1, native=WETH)
    assert pnl.realized_quote == -600_000_000
    assert pnl.unpriced == ("WBTC", "WETH")


def test_the_ledger_query_keeps_paper_live_days_and_wallets_apart(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.upgrade()
    try:
        now = datetime.now(UTC)

        wallet = HotWallet(ANVIL_KEY_1).address

        def paper_fill(cid: str, amount_in: int, amount_out: int, *, wallet: str = wallet,
                       env: str = "test", at: datetime = now, gas: int = 100_000) -> None:
            ledger.record_order(client_order_id=cid, env=env, wallet=wallet, venue="v2",
                                token_in=USDC.address, token_out=WETH.address,
                                amount_in=amount_in, min_amount_out=1,
                                expected_amount_out=amount_out, mode=TradeMode.PAPER)
            ledger.add_fill(cid, amount_in=amount_in, amount_out=amount_out, gas_used=gas,
                            filled_at=at)

        paper_fill("today", 3_000_000_000, 10**18)
        paper_fill("yesterday", 3_000_000_000, 10**17, at=now - timedelta(days=1))
        paper_fill("other-wallet", 3_000_000_000, 10**17, wallet="0x" + "b" * 40)
        paper_fill("other-env", 3_000_000_000, 10**17, env="dev")
        # A live transaction of the same wallet (a sweep), mined: its gas is live, not paper.
        signed = HotWallet(ANVIL_KEY_1).sign({
            "type": 2, "chainId": 31337, "nonce": 0, "to": wallet, "value": 0, "gas": 60_000,
            "maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1, "data": "0x"})
        ledger.record_transaction(env="test", wallet=wallet, purpose="sweep",
                                  tx_hash=signed.tx_hash, nonce=0, raw_tx=signed.raw,
                                  max_fee_per_gas=10**9, max_priority_fee_per_gas=1,
                                  gas_limit=60_000)
        ledger.update_transaction(signed.tx_hash, TxStatus.MINED, block_number=1,
                                  gas_used=50_000, effective_gas_price=2 * 10**9)

        common = {"env": "test", "wallet": wallet.lower(), "tokens": [USDC, WETH], "quote": USDC}
        paper = realized_pnl_today(ledger, mode="paper", prices={**PRICES, "WETH": 2900.0},
                                   native=WETH, paper_gas_price_wei=10**9, **common)
        assert paper.fills == 1
        assert paper.gas_wei == 100_000 * 10**9  # the paper fill's simulated gas at 1 gwei
        assert paper.realized_quote == -100_000_000 - 290_000
        live = realized_pnl_today(ledger, mode=TradeMode.LIVE, prices=PRICES, native=WETH,
                                  **common)
        assert (live.fills, live.gas_wei, live.realized_quote) == (0, 10**14, -300_000)
        assert traded_today_quote(ledger, mode="paper", prices=PRICES, **common) == 3_000_000_000
        assert traded_today_quote(ledger, mode="live", prices=PRICES, **common) == 0
    finally:
        ledger.dispose()


# -- the backtest uses the same definition -----------------------------------------------------


def test_the_backtest_stops_at_its_daily_loss_limit_from_its_own_fills() -> None:
    market = synthetic.market({"WETH/USDC": synthetic.mean_reverting(400, 1, vol=0.004, phi=0.9)})
    quote = token_for("USDC")
    limits = default_limits(quote, ["USDC", "WETH"], "ETH")
    free = run_backtest(market)
    assert len(free.trades) >= 2 and "daily_loss" not in free.rejections
    # Each trade pays LP fees and gas, so a limit of 1 USDC is reached after the first fills.
    capped = run_backtest(market, BacktestConfig(limits=limits.model_copy(
        update={"daily_loss_limit_quote": 1_000_000})))
    assert capped.rejections.get("daily_loss", 0) >= 1, capped.rejections
    assert 1 <= len(capped.trades) < len(free.trades)


# -- the live path on the dev chain ------------------------------------------------------------


def _losing_config(test_env: AppConfig, limit_quote: int) -> AppConfig:
    strategy = test_env.strategy.model_copy(update={"name": "statistical"})
    risk = test_env.risk.model_copy(update={"daily_loss_limit_quote": limit_quote})
    return test_env.model_copy(update={"strategy": strategy, "risk": risk})


def _signal(side: str, edge_bps: float) -> SignalRow:
    now = datetime.now(UTC)
    return SignalRow(model="mean_reversion", pair="WETH/USDC", side=side, edge_bps=edge_bps,
                     confidence=0.9, horizon_s=600, inputs_from=now - timedelta(hours=1),
                     inputs_to=now, created_at=now, payload={"z": -2.5 if side == "buy" else 2.5})


def _wallet_value(chain: RpcClient, devnet: DevnetManifest, rt: TradingRuntime,
                  prices: dict[str, float], balances: dict[str, int]) -> int:
    tokens = {t.symbol: t.token() for t in devnet.tokens}
    total = sum(quote_value(raw, tokens[s], prices[s], rt.quote)
                for s, raw in balances.items() if s != "ETH")
    return total + quote_value(balances["ETH"], rt.hub, prices[rt.hub.symbol], rt.quote)


@pytest.mark.chain
def test_a_live_session_that_loses_money_stops_at_the_daily_loss_limit(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest
) -> None:
    limit = 20_000_000  # 20 USDC
    rt = TradingRuntime.build(_losing_config(test_env, limit), HotWallet(ANVIL_KEY_1))
    try:
        start_balances = wallet_balances(chain, devnet)
        # Cycle 1: a model says buy WETH; the bot buys (~900 USDC), paying LP fees and gas.
        rt.ledger.record_signals([_signal("buy", 80.0)])
        bought = run_cycle(rt, "loss-1")
        assert bought.executions and all(e.filled for e in bought.executions), bought
        assert "daily_loss" not in bought.rejected, "the limit must not fire before the loss"

        # The market falls 5 % under it: every WETH/USDC pool is sold down by a noise trader.
        sim = MarketSimulator(chain, devnet)
        for snap in rt.reader.snapshot(rt.config.pool_refs()).pools:
            if {snap.pool.token0.symbol, snap.pool.token1.symbol} == {"WETH", "USDC"}:
                weth_is_0 = snap.pool.token0.symbol == "WETH"
                assert sim.push(snap, snap.price() * (0.95 if weth_is_0 else 1 / 0.95))

        # Today's PnL at the new prices is exactly what the wallet lost by trading: its value
        # now less its value had it not traded, both at today's prices (gas included).
        snapshot = rt.reader.snapshot(rt.config.pool_refs(), [t.token() for t in rt.config.tokens],
                                      [rt.config.wallets.hot])
        prices = quote_prices(snapshot, rt.quote, rt.hub)
        today = realized_pnl_today(
            rt.ledger, env=rt.config.env, wallet=rt.config.wallets.hot, mode="live",
            tokens=[t.token() for t in rt.config.tokens], prices=prices, quote=rt.quote,
            native=rt.hub)
        lost_by_trading = (_wallet_value(chain, devnet, rt, prices, wallet_balances(chain, devnet))
                           - _wallet_value(chain, devnet, rt, prices, start_balances))
        assert today.gas_wei > 0 and today.fills == len(bought.executions)
        assert abs(today.realized_quote - lost_by_trading) <= 3, (today, lost_by_trading)
        assert today.realized_quote <= -limit, f"the session must have lost {limit}: {today}"

        # Cycle 2: the model now says sell, more strongly than it said buy; the order is
        # refused by the daily loss limit and nothing reaches the chain.
        rt.ledger.record_signals([_signal("sell", 120.0)])
        nonce = pending_nonce(chain, rt.config.wallets.hot)
        before = wallet_balances(chain, devnet)
        stopped = run_cycle(rt, "loss-2")
        assert stopped.intents >= 1, stopped
        assert stopped.executions == [] and stopped.approved == 0, stopped
        assert set(stopped.rejected) == {"daily_loss"}, stopped.rejected
        assert pending_nonce(chain, rt.config.wallets.hot) == nonce, "a transaction was sent"
        assert wallet_balances(chain, devnet) == before
        with rt.ledger.session(write=False) as session:
            decisions = session.exec(select(RiskDecisionRow).where(
                RiskDecisionRow.rule == "daily_loss")).all()
        assert decisions and not any(d.approved for d in decisions)
        assert all(d.client_order_id.startswith("loss-2") for d in decisions)
        reason = decisions[0].reason
        assert reason.startswith("daily_loss: realized loss today of "), reason
        assert "has reached daily_loss_limit_quote of 20 USDC" in reason, reason
        assert int(decisions[0].details["realized_pnl_today_quote"]) <= -limit
        assert all(o.status is OrderStatus.FILLED for o in _orders(rt))
    finally:
        rt.close()


def _orders(rt: TradingRuntime) -> list[OrderRow]:
    with rt.ledger.session(write=False) as session:
        return list(session.exec(select(OrderRow)).all())
