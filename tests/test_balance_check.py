"""Wallet A's balances against the ledger: the pure comparison, and the live cycle on anvil."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import SystemFault
from dexpilot.ledger import BalanceSnapshotRow, ErrorRow
from dexpilot.ledger.balances import NATIVE_TOKEN, KnownFlows, compare_balances
from dexpilot.state import BotState
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from tests.fixtures.chain import wallet_balances
from tests.test_trading_cycle import _push

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"


def test_fills_and_gas_explain_the_new_balances() -> None:
    flows = KnownFlows(inflows={USDC: 1_010}, outflows={USDC: 1_000, WETH: 5}, gas_wei=21_000)
    check = compare_balances({USDC: 5_000, WETH: 50, NATIVE_TOKEN: 10**18}, flows,
                             {USDC: 5_010, WETH: 45, NATIVE_TOKEN: 10**18 - 21_000})
    assert check.shortfalls == () and check.deposits == ()


def test_an_unexplained_decrease_is_a_shortfall_with_both_numbers() -> None:
    flows = KnownFlows(outflows={USDC: 100})
    check = compare_balances({USDC: 1_000, WETH: 7}, flows, {USDC: 850, WETH: 7})
    [short] = check.shortfalls
    assert (short.token, short.previous, short.expected, short.actual) == (USDC, 1_000, 900, 850)
    assert short.difference == -50


def test_gas_beyond_the_ledger_is_a_native_shortfall_but_gas_never_moves_tokens() -> None:
    flows = KnownFlows(gas_wei=1_000)
    check = compare_balances({NATIVE_TOKEN: 10_000, USDC: 10}, flows,
                             {NATIVE_TOKEN: 8_999, USDC: 10})
    assert [d.token for d in check.shortfalls] == [NATIVE_TOKEN]
    assert check.shortfalls[0].expected == 9_000


def test_a_deposit_is_reported_not_a_fault() -> None:
    check = compare_balances({USDC: 1_000}, KnownFlows(), {USDC: 3_000})
    assert check.shortfalls == ()
    assert [(d.token, d.difference) for d in check.deposits] == [(USDC, 2_000)]


def test_tolerance_bounds_the_shortfall_and_unmatched_tokens_are_left_out() -> None:
    previous = {USDC: 1_000, WETH: 5}
    assert compare_balances(previous, KnownFlows(), {USDC: 998}, tolerance=2).shortfalls == ()
    assert len(compare_balances(previous, KnownFlows(), {USDC: 997}, tolerance=2).shortfalls) == 1


def _snapshot_blocks(rt: TradingRuntime) -> list[int]:
    with rt.ledger.session(write=False) as session:
        rows = session.exec(select(BalanceSnapshotRow)
                            .where(BalanceSnapshotRow.token == NATIVE_TOKEN)
                            .order_by(col(BalanceSnapshotRow.id))).all()
    return [r.block_number for r in rows]


@pytest.mark.chain
def test_trading_cycles_reconcile_and_a_transfer_behind_the_bots_back_is_a_fault(
    runtime: TradingRuntime, chain: RpcClient, devnet: DevnetManifest
) -> None:
    hot = devnet.hot_wallet
    first = run_cycle(runtime, "b0")  # the first snapshot: nothing to compare it with yet
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
    traded = run_cycle(runtime, "b1")  # b0's fills and gas (swaps, approvals) explain the move
    assert first.executions or traded.executions, "cycles must trade for the check to mean much"
    run_cycle(runtime, "b2")  # and b1's explain the move since b1
    # Someone sends wallet A ether: a deposit, not a fault.
    usdc = next(t for t in devnet.tokens if t.symbol == "USDC")
    whale = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil dev account #2
    chain.request("eth_sendTransaction", [{"from": whale, "to": hot, "value": hex(10**18)}])
    run_cycle(runtime, "b3")
    assert runtime.state.state is BotState.RUNNING
    blocks = _snapshot_blocks(runtime)
    assert len(blocks) == 4 and blocks == sorted(blocks) and blocks[2] > blocks[1]
    with runtime.ledger.session(write=False) as session:
        assert len(session.exec(select(BalanceSnapshotRow)).all()) == 4 * (
            len(runtime.config.tokens) + 1)

    # Wallet A's USDC leaves without the bot: dev accounts are unlocked on anvil.
    stolen = 12_345
    data = ("0xa9059cbb" + whale[2:].lower().rjust(64, "0") + hex(stolen)[2:].rjust(64, "0"))
    tx = chain.request("eth_sendTransaction", [{"from": hot, "to": usdc.address, "data": data}])
    receipt = chain.wait_for_receipt(tx, timeout=10)
    assert int(receipt["status"], 16) == 1
    now_usdc = wallet_balances(chain, devnet)["USDC"]

    with pytest.raises(SystemFault) as fault:
        run_cycle(runtime, "b5")
    message = str(fault.value)
    assert "USDC" in message
    assert (f"USDC ({usdc.address}): chain {now_usdc}, ledger expects {now_usdc + stolen}"
            in message), message
    assert f"{stolen} unaccounted for" in message
    assert runtime.state.state is BotState.ERROR
    with runtime.ledger.session(write=False) as session:
        errors = session.exec(select(ErrorRow)).all()
    assert any("USDC" in e.message for e in errors)
