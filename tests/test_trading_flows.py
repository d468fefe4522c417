"""The trading flows on Prefect and the error policy around a cycle, on the dev chain."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlmodel import select

from dexpilot.chain.anvil import AnvilProcess, free_port
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig
from dexpilot.errors import SystemFault
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import ErrorRow, Ledger, OrderRow, OrderStatus
from dexpilot.ledger.models import LEDGER_TABLES
from dexpilot.state import BotState, BotStateMachine, LedgerTransitionStore
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from tests.fixtures.chain import ANVIL_KEY_1
from tests.fixtures.prefect import PrefectServer

KEY_HEX = ANVIL_KEY_1[2:]


def _gap(chain: RpcClient, devnet: DevnetManifest, factor: float = 1.02) -> None:
    sim = MarketSimulator(chain, devnet)
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = next(s for s in reader.snapshot(devnet.pool_refs()).pools
                if s.pool.venue == "sushiswap-v2" and s.pool.pair == "WETH/USDC")
    assert sim.push(snap, snap.price() * factor)


def _orders(config: AppConfig) -> list[OrderRow]:
    ledger = Ledger(config.ledger.url)
    try:
        with ledger.session(write=False) as session:
            return list(session.exec(select(OrderRow)).all())
    finally:
        ledger.dispose()


def test_rpc_endpoint_down_fails_over_to_the_next(test_env: AppConfig, chain: RpcClient,
                                                  devnet: DevnetManifest) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    chain_cfg = test_env.chain.model_copy(update={"rpc_urls": [dead, devnet.rpc_url]})
    config = test_env.model_copy(update={"chain": chain_cfg})
    _gap(chain, devnet)
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        report = run_cycle(rt, "failover")
        assert rt.client.url == devnet.rpc_url
        assert report.executions and all(e.filled for e in report.executions)
    finally:
        rt.close()


def test_chain_id_mismatch_moves_the_bot_to_error_and_trades_nothing(
    test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest
) -> None:
    other = AnvilProcess.start(chain_id=999)
    try:
        chain_cfg = test_env.chain.model_copy(update={"rpc_urls": [other.url]})
        config = test_env.model_copy(update={"chain": chain_cfg})
        with pytest.raises(SystemFault, match="chain id"):
            TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    finally:
        other.stop()
    ledger = Ledger(test_env.ledger.url)
    try:
        assert BotStateMachine(LedgerTransitionStore(ledger), "test").state is BotState.ERROR
        with ledger.session(write=False) as session:
            errors = session.exec(select(ErrorRow)).all()
        assert any("chain id" in e.message for e in errors)
    finally:
        ledger.dispose()
    assert _orders(test_env) == []


def test_an_endpoint_on_another_chain_is_left_and_with_none_left_the_bot_stops(
        test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest) -> None:
    other = AnvilProcess.start(chain_id=999)
    chain_cfg = test_env.chain.model_copy(update={"rpc_urls": [devnet.rpc_url, other.url]})
    config = test_env.model_copy(update={"chain": chain_cfg})
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        _gap(chain, devnet)
        rt.client.switch()  # the endpoint in use now serves another chain
        report = run_cycle(rt, "switched")
        assert rt.client.url == devnet.rpc_url  # left for the one serving chain 31337
        assert report.executions and all(e.filled for e in report.executions)
        [switch] = [e for e in _errors(test_env) if e.source == "rpc.failover"]
        assert "now reports 999, expected 31337" in switch.message
        assert rt.state.state is BotState.RUNNING
    finally:
        rt.close()
        other.stop()
    other = AnvilProcess.start(chain_id=999)
    config = test_env.model_copy(update={"chain": test_env.chain.model_copy(
        update={"rpc_urls": [devnet.rpc_url]})})
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        rt.client.urls[0] = other.url  # the only endpoint now serves another chain
        _gap(chain, devnet)
        with pytest.raises(SystemFault, match="chain id changed"):
            run_cycle(rt, "wrong")
        assert rt.state.state is BotState.ERROR
        rt.client.urls[0] = devnet.rpc_url
        report = run_cycle(rt, "after")  # still in ERROR: no trading until resumed
        assert report.skipped_reason == "bot is ERROR"
    finally:
        rt.close()
        other.stop()


def _errors(config: AppConfig) -> list[ErrorRow]:
    ledger = Ledger(config.ledger.url)
    try:
        with ledger.session(write=False) as session:
            return list(session.exec(select(ErrorRow).order_by(ErrorRow.id)).all())
    finally:
        ledger.dispose()


@pytest.mark.prefect
def test_trading_cycle_flow_trades_and_keeps_the_key_secret(
    prefect_server: PrefectServer, test_env: AppConfig, chain: RpcClient,
    devnet: DevnetManifest, caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.client.orchestration import get_client

    from flows.trading_cycle import trading_cycle
    from settings.blocks import push_settings

    push_settings("test")
    _gap(chain, devnet)
    caplog.set_level("DEBUG")
    result = trading_cycle(env="test")

    assert len(result["executions"]) == 2
    assert all(e["status"] == OrderStatus.FILLED for e in result["executions"])
    assert [o.status for o in _orders(test_env)] == [OrderStatus.FILLED] * 2

    async def api_texts() -> list[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
            block = await client.read_block_document_by_name("test", "dexpilot-environment",
                                                             include_secrets=True)
            runs = await client.read_flow_runs()
            logs = await client.read_logs()
            return ([str(a.data) for a in artifacts] + [json.dumps(block.data, default=str)]
                    + [json.dumps(r.parameters, default=str) for r in runs]
                    + [log.message for log in logs])

    texts = asyncio.run(api_texts())
    texts += [r.getMessage() for r in caplog.records]
    ledger = Ledger(test_env.ledger.url)
    try:
        with ledger.session(write=False) as session:
            for table in LEDGER_TABLES:
                texts += [repr(row) for row in session.exec(select(table)).all()]
    finally:
        ledger.dispose()
    assert texts, "nothing was scanned"
    leaks = [t for t in texts if KEY_HEX in t.lower()]
    assert leaks == []


@pytest.mark.prefect
def test_concurrent_cycles_for_one_wallet_never_overlap(prefect_server: PrefectServer,
                                                        test_env: AppConfig) -> None:
    from tasks.locks import wallet_lock

    wallet = test_env.wallets.hot
    first_in, second_trying, second_in = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with wallet_lock(wallet):
            order.append("first in")
            first_in.set()
            second_trying.wait(30)
            # The second holder must not get in while this one holds the wallet.
            assert not second_in.wait(2)
            order.append("first out")

    def second() -> None:
        first_in.wait(30)
        second_trying.set()
        with wallet_lock(wallet):
            order.append("second in")
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert order == ["first in", "first out", "second in"]
