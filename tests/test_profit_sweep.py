"""Profit sweep: value above working capital goes to wallet B in the quote token, once."""

from __future__ import annotations

import pytest
from sqlmodel import select

from dexpilot.chain.deployer import DEPLOYER, Deployer
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig
from dexpilot.execution.sweep import plan_sweep, wallet_value_quote
from dexpilot.ledger import Ledger, ProfitSweepRow
from dexpilot.ledger.models import TransactionRow, TxPurpose, TxStatus
from dexpilot.money import Token
from tests.fixtures.prefect import PrefectServer

USDC = Token("USDC", "0x" + "11" * 20, 6)
WETH = Token("WETH", "0x" + "22" * 20, 18)


def test_value_counts_every_holding_at_its_price() -> None:
    balances = {"USDC": 1_000 * 10**6, "WETH": 2 * 10**18}
    value = wallet_value_quote(balances, [USDC, WETH], {"WETH": 3000.0}, USDC)
    assert value == 7_000 * 10**6


@pytest.mark.parametrize(("usdc", "expected"), [
    (10_000, None),                # value 16,000 < working capital 20,000
    (14_050, None),                # excess 50 < threshold 100
    (14_100, 100 * 10**6),         # excess exactly the threshold
    (30_000, 16_000 * 10**6),      # excess 16,000 fully in USDC
])
def test_plan_sweeps_only_excess_above_threshold(usdc: int, expected: int | None) -> None:
    plan = plan_sweep(balances={"USDC": usdc * 10**6, "WETH": 2 * 10**18}, tokens=[USDC, WETH],
                      prices={"WETH": 3000.0}, quote=USDC, cold_wallet="0x" + "33" * 20,
                      working_capital_quote=20_000 * 10**6, threshold_quote=100 * 10**6)
    assert (plan.amount if plan else None) == expected


def test_sweep_never_sends_more_quote_than_held() -> None:
    plan = plan_sweep(balances={"USDC": 500 * 10**6, "WETH": 100 * 10**18}, tokens=[USDC, WETH],
                      prices={"WETH": 3000.0}, quote=USDC, cold_wallet="0x" + "33" * 20,
                      working_capital_quote=20_000 * 10**6, threshold_quote=0)
    assert plan is not None and plan.amount == 500 * 10**6


def _usdc_balance(chain: RpcClient, devnet: DevnetManifest, wallet: str) -> int:
    usdc = next(t.token() for t in devnet.tokens if t.symbol == "USDC")
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    return reader.snapshot([], [usdc], [wallet]).balance(wallet, usdc)


@pytest.mark.prefect
def test_profit_sweep_flow_moves_profit_to_wallet_b_once(
    prefect_server: PrefectServer, devnet: DevnetManifest, chain: RpcClient, test_env: AppConfig,
) -> None:
    from flows.profit_sweep import profit_sweep
    from settings.blocks import push_settings

    push_settings("test")
    config = test_env

    assert profit_sweep(env="test") is None, "wallet A starts below its working capital"

    # A profitable day: wallet A ends 25,000 USDC richer.
    usdc = next(t for t in devnet.tokens if t.symbol == "USDC")
    deployer = Deployer(chain)
    deployer.call_tx(DEPLOYER, deployer.contract("DevToken", usdc.address), "mint",
                     devnet.hot_wallet, 25_000 * 10**6)
    b_before = _usdc_balance(chain, devnet, devnet.cold_wallet)
    a_before = _usdc_balance(chain, devnet, devnet.hot_wallet)

    tx_hash = profit_sweep(env="test")

    assert tx_hash is not None
    ledger = Ledger(config.ledger.url)
    try:
        with ledger.session(write=False) as session:
            sweeps = session.exec(select(ProfitSweepRow)).all()
            txs = session.exec(select(TransactionRow)).all()
    finally:
        ledger.dispose()
    assert len(sweeps) == 1 and sweeps[0].tx_hash == tx_hash
    swept = sweeps[0].amount
    assert sweeps[0].to_address == devnet.cold_wallet
    assert 0 < swept <= 25_000 * 10**6
    assert _usdc_balance(chain, devnet, devnet.cold_wallet) == b_before + swept
    assert _usdc_balance(chain, devnet, devnet.hot_wallet) == a_before - swept
    assert [(t.purpose, t.status) for t in txs] == [(TxPurpose.SWEEP, TxStatus.MINED)]

    assert profit_sweep(env="test") is None, "after the sweep wallet A is at working capital"
