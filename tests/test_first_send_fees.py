"""The first send of a trade offers at most the max fee per gas risk approved: the gas price
limit holds for the transaction that goes out, not only for fee bumps. Driven through the live
trading cycle, with the chain's base fee raised between the risk check and the send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.ledger import OrderStatus, TransactionRow
from dexpilot.trading.cycle import (
    GAS_PRICE,
    RISK,
    CycleStep,
    TradingRuntime,
    call_directly,
    run_cycle,
)

pytestmark = pytest.mark.chain


def _push_sushiswap(chain: RpcClient, devnet: DevnetManifest) -> None:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = next(s for s in reader.snapshot(devnet.pool_refs()).pools
                if s.pool.venue == "sushiswap-v2" and s.pool.pair == "WETH/USDC")
    assert MarketSimulator(chain, devnet).push(snap, snap.price() * 1.02)


def _base_fee_rises_after_risk(chain: RpcClient, new_base: Callable[[int, int], int],
                               seen: dict[str, int]) -> Callable[..., Any]:
    """A step runner that, once risk has approved the cycle's gas price, mines a block whose
    base fee is ``new_base(approved, priority)`` (another actor's gas war)."""
    def run(step: CycleStep, *args: Any) -> Any:
        result = call_directly(step, *args)
        if step is GAS_PRICE:
            seen["approved"] = result
        if step is RISK:
            priority = max(int(chain.request("eth_maxPriorityFeePerGas"), 16), 10**8)
            seen["priority"] = priority
            seen["base"] = new_base(seen["approved"], priority)
            chain.request("anvil_setNextBlockBaseFeePerGas", [hex(seen["base"])])
            chain.request("evm_mine")
        return result
    return run


def test_a_higher_base_fee_after_risk_is_met_with_the_approved_fee_not_above_it(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest,
) -> None:
    _push_sushiswap(chain, devnet)
    seen: dict[str, int] = {}
    # Still minable within the approved fee, but the node now suggests twice the base fee.
    report = run_cycle(runtime, "fees", _base_fee_rises_after_risk(
        chain, lambda approved, priority: (approved - priority) * 3 // 4, seen))
    assert report.executions and all(e.status is OrderStatus.FILLED for e in report.executions)
    with runtime.ledger.session(write=False) as session:
        txs = list(session.exec(select(TransactionRow)).all())
    assert txs, "the arbitrage sent transactions"
    suggested = 2 * seen["base"] + seen["priority"]  # what the node now suggests
    assert suggested > seen["approved"], "the base fee must have risen past the approval"
    for tx in txs:
        on_chain = chain.request("eth_getTransactionByHash", [tx.tx_hash])
        assert int(on_chain["maxFeePerGas"], 16) == tx.max_fee_per_gas <= seen["approved"]
    assert max(tx.max_fee_per_gas for tx in txs) == seen["approved"]


def test_a_base_fee_above_the_approved_fee_fails_the_order_unsent(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest,
) -> None:
    _push_sushiswap(chain, devnet)
    seen: dict[str, int] = {}
    nonce = int(chain.request("eth_getTransactionCount", [devnet.hot_wallet, "pending"]), 16)
    report = run_cycle(runtime, "spike", _base_fee_rises_after_risk(
        chain, lambda approved, priority: approved * 2, seen))
    [first] = report.executions  # the arbitrage's second leg never trades after the first
    assert first.status is OrderStatus.FAILED
    assert "gas price rose after the risk check" in (first.error or "")
    assert int(chain.request("eth_getTransactionCount", [devnet.hot_wallet, "pending"]),
               16) == nonce
