"""The executor on the real dev chain: real Uniswap routers, real signing, a real SQLite ledger.

Every test asserts the exact ledger rows and the wallet's on-chain balances and nonce. Tests
that need a transaction to sit in the mempool turn automine off and drive the chain from the
test thread (``evm_mine``), synchronising on chain and ledger state, never on sleeps. The
crash tests kill a real child process (``python -m tests.test_executor ...``, see ``_child``)
with SIGKILL at a checkpoint and reconcile from the test process.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector
from sqlmodel import select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ConfigError, NetworkError, SystemFault
from dexpilot.execution.executor import (
    APPROVE,
    CANCEL_GAS,
    ExecutionResult,
    Executor,
    ExecutorSettings,
    LegPlan,
    swap_deadline,
)
from dexpilot.execution.fees import suggest_fees
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import (
    FillRow,
    Ledger,
    OrderRow,
    OrderStatus,
    TradeMode,
    TransactionRow,
    TxPurpose,
    TxStatus,
)
from dexpilot.ledger.models import LEDGER_TABLES
from dexpilot.money import Token
from dexpilot.risk import min_amount_out
from dexpilot.strategy.intent import OrderIntent
from dexpilot.venues.base import Venue
from dexpilot.venues.registry import venues_from_manifest
from dexpilot.venues.zeroex import ZeroExVenue
from tests.fakes.zeroex_server import FakeZeroEx

pytestmark = pytest.mark.chain

ENV = "test"
# Anvil dev account #1 (wallet A): a public test key.
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY_HEX = ANVIL_KEY_1.removeprefix("0x")
PROJECT_ROOT = Path(__file__).resolve().parents[1]

BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
ALLOWANCE_OF = function_signature_to_4byte_selector("allowance(address,address)")
V2_SWAP = function_signature_to_4byte_selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
)
USDC_1000 = 1_000 * 10**6
SLIPPAGE_BPS = 50
DEADLINE_S = 120
WAIT_S = 20.0


# -- helpers shared by the tests and the crash child ---------------------------------------
def tokens_of(devnet: DevnetManifest) -> dict[str, Token]:
    return {t.symbol: t.token() for t in devnet.tokens}


def latest_timestamp(client: RpcClient) -> int:
    return int(client.request("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


def make_plan(client: RpcClient, venue: Venue, token_in: Token, token_out: Token, amount: int,
              client_order_id: str, *, min_out: int | None = None) -> LegPlan:
    """A leg the way the trading cycle builds one: quote, slippage bound, block-time deadline."""
    quote = venue.quote_exact_in(token_in, token_out, amount)
    intent = OrderIntent(client_order_id, "test", token_in, token_out, amount, venue=venue.name)
    bound = min_amount_out(quote.amount_out, SLIPPAGE_BPS) if min_out is None else min_out
    return LegPlan(intent, venue, quote, bound, swap_deadline(latest_timestamp(client), DEADLINE_S))


def router_of(venue: Venue) -> str:
    """The spender of a Uniswap venue's swaps."""
    router = getattr(venue, "router", None)
    assert isinstance(router, str)
    return router


def make_executor(client: RpcClient, ledger: Ledger, devnet: DevnetManifest, *,
                  mode: TradeMode = TradeMode.LIVE, settings: ExecutorSettings | None = None,
                  checkpoint: Callable[[str], None] | None = None) -> Executor:
    signer = HotWallet(ANVIL_KEY_1) if mode is TradeMode.LIVE else None
    kwargs: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint is not None else {}
    return Executor(env=ENV, client=client, ledger=ledger, address=devnet.hot_wallet,
                    chain_id=devnet.chain_id, mode=mode, signer=signer, settings=settings,
                    **kwargs)


def _child(argv: list[str]) -> None:
    """The crash child: execute one live leg and SIGKILL itself at the named checkpoint."""
    manifest_path, ledger_url, point, client_order_id = argv
    devnet = DevnetManifest.read(Path(manifest_path))

    def checkpoint(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    with RpcClient([devnet.rpc_url]) as client:
        ledger = Ledger(ledger_url)
        tokens = tokens_of(devnet)
        venue = venues_from_manifest(devnet, client)["uniswap-v2"]
        plan = make_plan(client, venue, tokens["USDC"], tokens["WETH"], USDC_1000,
                         client_order_id)
        make_executor(client, ledger, devnet, checkpoint=checkpoint).execute(plan)
    sys.exit(3)  # the checkpoint never fired


# -- chain and ledger reads -------------------------------------------------------------------
def erc20_call(client: RpcClient, token: str, data: bytes) -> int:
    return int(client.request("eth_call", [{"to": token, "data": "0x" + data.hex()}, "latest"]),
               16)


def allowance(client: RpcClient, token: Token, owner: str, spender: str) -> int:
    return erc20_call(client, token.address,
                      ALLOWANCE_OF + encode(["address", "address"], [owner, spender]))


def balances(client: RpcClient, devnet: DevnetManifest) -> dict[str, int]:
    """Wallet A's balance of every dev token and of ETH, raw units."""
    out = {symbol: erc20_call(client, token.address,
                              BALANCE_OF + encode(["address"], [devnet.hot_wallet]))
           for symbol, token in tokens_of(devnet).items()}
    out["ETH"] = int(client.request("eth_getBalance", [devnet.hot_wallet, "latest"]), 16)
    return out


def nonce_of(client: RpcClient, address: str, tag: str = "latest") -> int:
    return int(client.request("eth_getTransactionCount", [address, tag]), 16)


def receipt_of(client: RpcClient, tx_hash: str) -> dict[str, Any] | None:
    receipt = client.request("eth_getTransactionReceipt", [tx_hash])
    return dict(receipt) if receipt is not None else None


def rows(ledger: Ledger, table: type[Any]) -> list[Any]:
    with ledger.session(write=False) as session:
        return list(session.exec(select(table).order_by(table.id)).all())


def dump_ledger(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    """Every row of every ledger table, as plain dicts."""
    return {str(table.__tablename__): [row.model_dump() for row in rows(ledger, table)]
            for table in LEDGER_TABLES}


def swaps_of(ledger: Ledger, client_order_id: str) -> list[TransactionRow]:
    return [t for t in ledger.transactions_for_order(client_order_id)
            if t.purpose is TxPurpose.SWAP]


def wallet_pool(client: RpcClient, wallet: str) -> dict[str, Any]:
    """Wallet A's transactions in the node's pool, by nonce."""
    content = client.request("txpool_content")
    found: dict[str, Any] = {}
    for section in ("pending", "queued"):
        for sender, by_nonce in content.get(section, {}).items():
            if sender.lower() == wallet.lower():
                found.update(by_nonce)
    return found


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll chain/ledger state until ``condition`` holds (a synchronisation, not a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def gas_spent(ledger: Ledger) -> int:
    """Wei the wallet paid for every transaction the ledger holds a receipt for."""
    return sum((t.gas_used or 0) * (t.effective_gas_price or 0)
               for t in rows(ledger, TransactionRow)
               if t.status in (TxStatus.MINED, TxStatus.REVERTED))


def assert_chain_matches_ledger(client: RpcClient, devnet: DevnetManifest, ledger: Ledger,
                                before: dict[str, int], nonce_before: int) -> None:
    """Token balances moved by exactly the recorded fills, ETH by exactly the recorded gas,
    and the nonce by exactly the transactions that have a receipt: nothing lost or doubled."""
    after = balances(client, devnet)
    symbol = {t.address: s for s, t in tokens_of(devnet).items()}
    expected = {s: 0 for s in before}
    for fill in rows(ledger, FillRow):
        expected[symbol[fill.token_in]] -= fill.amount_in
        expected[symbol[fill.token_out]] += fill.amount_out
    expected["ETH"] = -gas_spent(ledger)
    assert {s: after[s] - before[s] for s in before} == expected
    used = [t for t in rows(ledger, TransactionRow)
            if t.status in (TxStatus.MINED, TxStatus.REVERTED)]
    assert nonce_of(client, devnet.hot_wallet) == nonce_before + len(used)


def approve_directly(client: RpcClient, devnet: DevnetManifest, token: Token, spender: str,
                     amount: int) -> None:
    """Set wallet A's allowance outside the executor (anvil's dev accounts are unlocked)."""
    data = APPROVE + encode(["address", "uint256"], [spender, amount])
    tx_hash = client.request("eth_sendTransaction", [
        {"from": devnet.hot_wallet, "to": token.address, "data": "0x" + data.hex()}])
    assert int(client.wait_for_receipt(tx_hash, timeout=10)["status"], 16) == 1


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    book = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    book.upgrade()
    try:
        yield book
    finally:
        book.dispose()


@pytest.fixture
def rpc(devnet: DevnetManifest, chain: RpcClient) -> Iterator[RpcClient]:
    """The executor's own client (the test thread keeps ``chain``); the chain is reverted
    after the test by the ``chain`` fixture.

    One empty block is mined first: a dev chain loaded from its cached state has a latest
    block as old as the cache, and deadlines are computed from the latest block's time (on a
    live chain it is seconds old)."""
    chain.request("evm_mine")
    with RpcClient([devnet.rpc_url]) as client:
        yield client


@pytest.fixture
def venues(devnet: DevnetManifest, rpc: RpcClient) -> dict[str, Venue]:
    return venues_from_manifest(devnet, rpc)


@pytest.fixture
def tokens(devnet: DevnetManifest) -> dict[str, Token]:
    return tokens_of(devnet)


@pytest.fixture
def manual_mining(chain: RpcClient) -> Iterator[RpcClient]:
    """Automine off: transactions wait in the pool until the test calls ``evm_mine``.
    ``evm_revert`` restores neither the pool nor automine, so both are reset here."""
    chain.request("evm_setAutomine", [False])
    try:
        yield chain
    finally:
        chain.request("anvil_dropAllTransactions")
        chain.request("evm_setAutomine", [True])


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], ExecutionResult]], Future[ExecutionResult]]]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="executor") as pool:
        yield lambda call: pool.submit(call)


# -- 1. live happy path ---------------------------------------------------------------------
@pytest.mark.parametrize("venue_name", ["uniswap-v2", "uniswap-v3"])
def test_live_swap_approves_exactly_and_fills_the_quote(
    venue_name: str, chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    venue = venues[venue_name]
    usdc, weth = tokens["USDC"], tokens["WETH"]
    router = router_of(venue)
    assert allowance(chain, usdc, devnet.hot_wallet, router) == 0
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    plan = make_plan(rpc, venue, usdc, weth, USDC_1000, "happy-1")
    seen: dict[str, int] = {}

    def checkpoint(name: str) -> None:  # the allowance just before the swap is broadcast
        if name == "swap_signed":
            seen["allowance"] = allowance(chain, usdc, devnet.hot_wallet, router)

    result = make_executor(rpc, ledger, devnet, checkpoint=checkpoint).execute(plan)

    assert result.status is OrderStatus.FILLED and result.error is None
    assert (result.amount_in, result.amount_out) == (USDC_1000, plan.quote.amount_out)
    assert seen["allowance"] == USDC_1000  # exact, never MAX
    assert allowance(chain, usdc, devnet.hot_wallet, router) == 0  # and fully spent
    approve, swap = rows(ledger, TransactionRow)
    assert (approve.purpose, approve.status, approve.nonce) == (
        TxPurpose.APPROVE, TxStatus.MINED, nonce0)
    assert (swap.purpose, swap.status, swap.nonce) == (TxPurpose.SWAP, TxStatus.MINED,
                                                       nonce0 + 1)
    assert swap.deadline == plan.deadline and swap.replaces_tx_hash is None
    sent_approve = chain.request("eth_getTransactionByHash", [approve.tx_hash])
    assert sent_approve["to"].lower() == usdc.address.lower()
    assert sent_approve["input"][:10] == "0x" + APPROVE.hex()
    assert decode(["address", "uint256"], bytes.fromhex(sent_approve["input"][10:])) == (
        router.lower(), USDC_1000)
    for tx in (approve, swap):
        receipt = receipt_of(chain, tx.tx_hash)
        assert receipt is not None and receipt["status"] == "0x1"
        assert tx.block_number == int(receipt["blockNumber"], 16)
        assert tx.gas_used == int(receipt["gasUsed"], 16) > 0
        assert tx.effective_gas_price == int(receipt["effectiveGasPrice"], 16) > 0
        assert tx.error is None
    assert result.tx_hash == swap.tx_hash
    assert result.gas_used == swap.gas_used
    [order] = rows(ledger, OrderRow)
    assert (order.client_order_id, order.status, order.tx_hash, order.nonce, order.error) == (
        "happy-1", OrderStatus.FILLED, swap.tx_hash, nonce0 + 1, None)
    assert (order.mode, order.venue, order.amount_in, order.min_amount_out,
            order.expected_amount_out) == (TradeMode.LIVE, venue_name, USDC_1000,
                                           plan.min_amount_out, plan.quote.amount_out)
    [fill] = rows(ledger, FillRow)
    assert (fill.order_id, fill.tx_hash, fill.nonce, fill.block_number, fill.gas_used,
            fill.effective_gas_price) == (order.id, swap.tx_hash, nonce0 + 1, swap.block_number,
                                          swap.gas_used, swap.effective_gas_price)
    assert (fill.token_in, fill.token_out, fill.amount_in, fill.amount_out) == (
        usdc.address, weth.address, USDC_1000, plan.quote.amount_out)
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)
    assert balances(chain, devnet)["WETH"] - before["WETH"] == plan.quote.amount_out


# -- 2. every swap is bounded -----------------------------------------------------------------
@pytest.mark.parametrize("bound", [0, -1])
def test_unbounded_swap_is_refused_before_anything_is_written(
    bound: int, chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    nonce0 = nonce_of(chain, devnet.hot_wallet, "pending")
    good = make_plan(rpc, venues["uniswap-v2"], tokens["USDC"], tokens["WETH"], USDC_1000, "b1")
    with pytest.raises(ValueError, match="min_amount_out must be > 0"):
        LegPlan(good.intent, good.venue, good.quote, bound, good.deadline)
    executor = make_executor(rpc, ledger, devnet)
    # A plan without a usable deadline is refused by the executor before any write, and so
    # is one tampered with after construction.
    with pytest.raises(ValueError, match="deadline must be a positive unix timestamp"):
        executor.execute(LegPlan(good.intent, good.venue, good.quote, good.min_amount_out, 0))
    object.__setattr__(good, "min_amount_out", bound)
    with pytest.raises(ValueError, match="min_amount_out"):
        executor.execute(good)
    assert {name: got for name, got in dump_ledger(ledger).items() if got} == {}
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce0


# -- 3. a swap that would revert is never sent -----------------------------------------------
@pytest.mark.parametrize(("venue_name", "reason"), [
    ("uniswap-v2", "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"),
    ("uniswap-v3", "Too little received"),
])
def test_simulated_revert_fails_the_order_without_sending_the_swap(
    venue_name: str, reason: str, chain: RpcClient, rpc: RpcClient, ledger: Ledger,
    devnet: DevnetManifest, venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    probe = make_plan(rpc, venues[venue_name], tokens["USDC"], tokens["WETH"], USDC_1000, "x")
    plan = make_plan(rpc, venues[venue_name], tokens["USDC"], tokens["WETH"], USDC_1000,
                     "sim-revert", min_out=probe.quote.amount_out + 1)  # more than the pool has

    result = make_executor(rpc, ledger, devnet).execute(plan)

    assert result.status is OrderStatus.FAILED
    assert result.error == f"simulation reverted: {reason}"
    assert "http" not in result.error  # the reason only: an RPC URL may carry an API key
    [order] = rows(ledger, OrderRow)
    assert (order.status, order.error, order.tx_hash, order.nonce) == (
        OrderStatus.FAILED, result.error, None, None)
    # Approval and swap were simulated together: nothing was signed, not even the approval.
    assert rows(ledger, TransactionRow) == []
    assert rows(ledger, FillRow) == []
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce0
    spender = plan.venue.approval_spender(plan.quote)
    assert allowance(chain, tokens["USDC"], devnet.hot_wallet, spender) == 0
    assert wallet_pool(chain, devnet.hot_wallet) == {}
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)


# -- 4. the price moves between quote and send ------------------------------------------------
def test_front_run_swap_reverts_on_chain_and_is_not_resent(
    manual_mining: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
    in_thread: Callable[[Callable[[], ExecutionResult]], Future[ExecutionResult]],
) -> None:
    chain = manual_mining
    venue, usdc, weth = venues["uniswap-v2"], tokens["USDC"], tokens["WETH"]
    router = router_of(venue)
    chain.request("evm_setAutomine", [True])
    approve_directly(chain, devnet, usdc, router, USDC_1000)
    chain.request("evm_setAutomine", [False])
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    plan = make_plan(rpc, venue, usdc, weth, USDC_1000, "front-run")
    executor = make_executor(rpc, ledger, devnet)

    future = in_thread(lambda: executor.execute(plan))
    # The executor simulated (the price was fine), signed and broadcast: the swap is pooled.
    swap = wait_until(lambda: next((t for t in swaps_of(ledger, "front-run")
                                    if t.status is TxStatus.SENT), None), "the swap to be sent")
    assert str(nonce0) in wallet_pool(chain, devnet.hot_wallet)
    # A noise trader dumps USDC into the same pool with a higher tip: it is mined first.
    trader = devnet.noise_traders[0]
    data = V2_SWAP + encode(
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [200_000 * 10**6, 1, [usdc.address, weth.address], trader, 2**40])
    front = chain.request("eth_sendTransaction", [{
        "from": trader, "to": router, "data": "0x" + data.hex(), "gas": hex(500_000),
        "maxFeePerGas": hex(swap.max_fee_per_gas * 10),
        "maxPriorityFeePerGas": hex(swap.max_priority_fee_per_gas * 10)}])
    chain.request("evm_mine")
    result = future.result(timeout=WAIT_S)

    front_receipt, our_receipt = receipt_of(chain, front), receipt_of(chain, swap.tx_hash)
    assert front_receipt is not None and our_receipt is not None
    assert front_receipt["blockNumber"] == our_receipt["blockNumber"]
    assert int(front_receipt["transactionIndex"], 16) < int(our_receipt["transactionIndex"], 16)
    assert (front_receipt["status"], our_receipt["status"]) == ("0x1", "0x0")
    error = "reverted on chain: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    assert (result.status, result.error, result.tx_hash) == (OrderStatus.FAILED, error,
                                                             swap.tx_hash)
    assert result.gas_used == int(our_receipt["gasUsed"], 16) > 0
    [order] = rows(ledger, OrderRow)
    assert (order.status, order.error, order.tx_hash, order.nonce) == (
        OrderStatus.FAILED, error, swap.tx_hash, nonce0)
    [row] = rows(ledger, TransactionRow)  # no replacement, no re-send
    assert (row.tx_hash, row.status, row.nonce, row.error) == (
        swap.tx_hash, TxStatus.REVERTED, nonce0, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT")
    assert row.gas_used == int(our_receipt["gasUsed"], 16)
    assert row.block_number == int(our_receipt["blockNumber"], 16)
    assert rows(ledger, FillRow) == []
    assert wallet_pool(chain, devnet.hot_wallet) == {}
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce0 + 1
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)


# -- 5. a stuck transaction is replaced at higher fees ---------------------------------------
def test_stuck_swap_is_replaced_with_bumped_fees_and_the_replacement_fills(
    manual_mining: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
    in_thread: Callable[[Callable[[], ExecutionResult]], Future[ExecutionResult]],
) -> None:
    chain = manual_mining
    venue, usdc, weth = venues["uniswap-v2"], tokens["USDC"], tokens["WETH"]
    router = router_of(venue)
    chain.request("evm_setAutomine", [True])
    approve_directly(chain, devnet, usdc, router, USDC_1000)
    chain.request("evm_setAutomine", [False])
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    plan = make_plan(rpc, venue, usdc, weth, USDC_1000, "stuck")
    settings = ExecutorSettings(receipt_timeout_s=0.5, max_replacements=2)
    executor = make_executor(rpc, ledger, devnet, settings=settings)

    future = in_thread(lambda: executor.execute(plan))

    def replacement_pooled() -> TransactionRow | None:
        swaps = swaps_of(ledger, "stuck")
        if len(swaps) < 2 or swaps[1].status is not TxStatus.SENT:
            return None
        pooled = wallet_pool(chain, devnet.hot_wallet).get(str(nonce0))
        return swaps[1] if pooled and pooled["hash"] == swaps[1].tx_hash else None

    replacement = wait_until(replacement_pooled, "the fee-bumped replacement in the pool")
    chain.request("evm_mine")
    result = future.result(timeout=WAIT_S)

    original, second = swaps_of(ledger, "stuck")  # exactly two: mined before a third bump
    assert second.tx_hash == replacement.tx_hash != original.tx_hash
    assert second.replaces_tx_hash == original.tx_hash
    assert original.nonce == second.nonce == nonce0
    assert 100 * second.max_fee_per_gas >= 110 * original.max_fee_per_gas
    assert 100 * second.max_priority_fee_per_gas >= 110 * original.max_priority_fee_per_gas
    assert (original.status, second.status) == (TxStatus.DROPPED, TxStatus.MINED)
    assert receipt_of(chain, original.tx_hash) is None
    mined = receipt_of(chain, second.tx_hash)
    assert mined is not None and mined["status"] == "0x1"
    assert (result.status, result.tx_hash) == (OrderStatus.FILLED, second.tx_hash)
    [order] = rows(ledger, OrderRow)
    assert (order.status, order.tx_hash, order.nonce) == (OrderStatus.FILLED, second.tx_hash,
                                                          nonce0)
    [fill] = rows(ledger, FillRow)
    assert (fill.tx_hash, fill.nonce, fill.amount_in, fill.amount_out) == (
        second.tx_hash, nonce0, USDC_1000, plan.quote.amount_out)
    assert fill.effective_gas_price == int(mined["effectiveGasPrice"], 16)
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)


# -- 6. crash recovery with a real killed process ---------------------------------------------
@pytest.mark.parametrize("case", ["order_written", "swap_signed", "swap_signed_expired",
                                  "swap_sent"])
def test_killed_process_is_reconciled_without_losing_or_doubling_a_trade(
    case: str, chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    tmp_path: Path,
) -> None:
    point = case.removesuffix("_expired")
    manifest = tmp_path / "manifest.json"
    devnet.write(manifest)
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    cid = f"crash-{case}"

    child = subprocess.run(
        [sys.executable, "-m", "tests.test_executor", str(manifest), ledger.url, point, cid],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    order = ledger.get_order(cid)
    assert order is not None
    txs = rows(ledger, TransactionRow)
    if point == "order_written":
        assert order.status is OrderStatus.NEW and txs == []
    else:
        approve, swap = txs
        assert approve.status is TxStatus.MINED and order.status is OrderStatus.SUBMITTED
        assert order.tx_hash == swap.tx_hash and order.nonce == swap.nonce == nonce0 + 1
        if point == "swap_signed":  # recorded, never broadcast
            assert swap.status is TxStatus.SIGNED
            assert chain.request("eth_getTransactionByHash", [swap.tx_hash]) is None
        else:  # broadcast, and mined at once (automine), but never settled
            assert swap.status is TxStatus.SENT
            assert receipt_of(chain, swap.tx_hash) is not None
    if case == "swap_signed_expired":
        chain.request("evm_increaseTime", [DEADLINE_S * 5])
        chain.request("evm_mine")

    results = make_executor(rpc, ledger, devnet).reconcile()

    order = ledger.get_order(cid)
    assert order is not None
    txs = rows(ledger, TransactionRow)
    fills = rows(ledger, FillRow)
    if case == "order_written":
        assert [(r.client_order_id, r.status) for r in results] == [(cid, OrderStatus.CANCELLED)]
        assert order.status is OrderStatus.CANCELLED
        assert order.error == "never sent: process stopped before signing"
        assert txs == [] and fills == []
        assert balances(chain, devnet) == before  # nothing at all on chain, not even gas
    elif case == "swap_signed_expired":
        approve, swap, cancel = txs
        assert (swap.status, cancel.status) == (TxStatus.DROPPED, TxStatus.MINED)
        assert (cancel.purpose, cancel.nonce, cancel.replaces_tx_hash, cancel.order_id) == (
            TxPurpose.CANCEL, swap.nonce, swap.tx_hash, None)
        assert cancel.gas_used == CANCEL_GAS
        sent = chain.request("eth_getTransactionByHash", [cancel.tx_hash])
        assert sent["to"].lower() == devnet.hot_wallet.lower() and int(sent["value"], 16) == 0
        assert receipt_of(chain, swap.tx_hash) is None
        assert [(r.client_order_id, r.status) for r in results] == [(cid, OrderStatus.CANCELLED)]
        assert order.status is OrderStatus.CANCELLED and fills == []
        assert order.error == f"cancelled: nonce {swap.nonce} used by cancel tx {cancel.tx_hash}"
    else:
        approve, swap = txs
        assert swap.status is TxStatus.MINED and swap.tx_hash == order.tx_hash
        receipt = receipt_of(chain, swap.tx_hash)  # the very hash the child signed
        assert receipt is not None and receipt["status"] == "0x1"
        assert [(r.client_order_id, r.status, r.tx_hash) for r in results] == [
            (cid, OrderStatus.FILLED, swap.tx_hash)]
        assert order.status is OrderStatus.FILLED
        [fill] = fills
        assert (fill.tx_hash, fill.nonce, fill.amount_in) == (swap.tx_hash, nonce0 + 1,
                                                              USDC_1000)
        assert fill.amount_out == order.expected_amount_out  # nothing moved the pool meanwhile
        on_chain = chain.request("eth_getRawTransactionByHash", [swap.tx_hash])
        assert on_chain == swap.raw_tx  # byte for byte what the child signed and recorded
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)

    snapshot, nonce_now = dump_ledger(ledger), nonce_of(chain, devnet.hot_wallet, "pending")
    assert make_executor(rpc, ledger, devnet).reconcile() == []
    assert dump_ledger(ledger) == snapshot
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce_now


class Killed(BaseException):
    """Stands for SIGKILL inside this process: nothing in the executor may catch it."""


def dies_at(monkeypatch: pytest.MonkeyPatch, ledger: Ledger, method: str,
            when: Callable[..., bool]) -> None:
    """Make ``ledger.<method>`` kill the process (raise ``Killed``) when ``when(*args, **kw)``:
    the steps between two checkpoints that a real kill could also separate."""
    real = getattr(ledger, method)

    def dying(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise Killed(method)
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, method, dying)


@pytest.mark.parametrize("gap", ["swap_recorded_order_still_new", "receipt_recorded_not_settled"])
def test_kill_between_two_ledger_writes_is_reconciled(
    gap: str, chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token], monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    doomed = Ledger(ledger.url)  # the killed process's own handle on the same database
    if gap == "swap_recorded_order_still_new":
        # The swap is recorded SIGNED, the order never became SUBMITTED, nothing broadcast.
        dies_at(monkeypatch, doomed, "update_order_status",
                lambda _cid, status, **_kw: status is OrderStatus.SUBMITTED)
    else:
        # The receipt is recorded (tx MINED), the fill and the order's FILLED are not.
        dies_at(monkeypatch, doomed, "add_fill", lambda *_a, **_kw: True)
    plan = make_plan(rpc, venues["uniswap-v2"], tokens["USDC"], tokens["WETH"], USDC_1000,
                     "gap")
    with pytest.raises(Killed):
        make_executor(rpc, doomed, devnet).execute(plan)
    doomed.dispose()
    order = ledger.get_order("gap")
    assert order is not None
    [swap] = swaps_of(ledger, "gap")
    if gap == "swap_recorded_order_still_new":
        assert (order.status, order.tx_hash, swap.status) == (OrderStatus.NEW, None,
                                                              TxStatus.SIGNED)
    else:
        assert (order.status, swap.status) == (OrderStatus.SUBMITTED, TxStatus.MINED)

    results = make_executor(rpc, ledger, devnet).reconcile()

    assert [(r.client_order_id, r.status, r.tx_hash) for r in results] == [
        ("gap", OrderStatus.FILLED, swap.tx_hash)]
    order = ledger.get_order("gap")
    assert order is not None
    assert (order.status, order.tx_hash, order.nonce) == (OrderStatus.FILLED, swap.tx_hash,
                                                          nonce0 + 1)
    [fill] = rows(ledger, FillRow)
    assert (fill.tx_hash, fill.nonce, fill.amount_in, fill.amount_out) == (
        swap.tx_hash, nonce0 + 1, USDC_1000, plan.quote.amount_out)
    assert_chain_matches_ledger(chain, devnet, ledger, before, nonce0)
    snapshot = dump_ledger(ledger)
    assert make_executor(rpc, ledger, devnet).reconcile() == []
    assert dump_ledger(ledger) == snapshot


def test_reconcile_leaves_another_environments_transactions_alone(
    chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    """A ``test`` executor must never broadcast or settle what a ``dev`` process signed."""
    nonce0 = nonce_of(chain, devnet.hot_wallet, "pending")
    plan = make_plan(rpc, venues["uniswap-v2"], tokens["USDC"], tokens["WETH"], USDC_1000,
                     "dev-order")
    ledger.record_order(client_order_id="dev-order", env="dev", wallet=devnet.hot_wallet,
                        venue=plan.venue.name, token_in=plan.intent.token_in.address,
                        token_out=plan.intent.token_out.address, amount_in=USDC_1000,
                        min_amount_out=plan.min_amount_out,
                        expected_amount_out=plan.quote.amount_out, mode=TradeMode.LIVE)
    signed = HotWallet(ANVIL_KEY_1).sign({
        "type": 2, "chainId": devnet.chain_id, "nonce": nonce0, "to": devnet.cold_wallet,
        "value": 1, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9})
    ledger.record_transaction(env="dev", wallet=devnet.hot_wallet, purpose=TxPurpose.SWAP,
                              tx_hash=signed.tx_hash, nonce=nonce0, raw_tx=signed.raw,
                              max_fee_per_gas=10**10, max_priority_fee_per_gas=10**9,
                              gas_limit=21_000, order_client_id="dev-order")
    snapshot = dump_ledger(ledger)

    assert make_executor(rpc, ledger, devnet).reconcile() == []

    assert dump_ledger(ledger) == snapshot
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce0
    assert chain.request("eth_getTransactionByHash", [signed.tx_hash]) is None


# -- 7. paper mode -------------------------------------------------------------------------
def test_paper_mode_simulates_approve_and_swap_and_sends_nothing(
    chain: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    venue, usdc, weth = venues["uniswap-v2"], tokens["USDC"], tokens["WETH"]
    router = router_of(venue)
    assert allowance(chain, usdc, devnet.hot_wallet, router) == 0  # the simulation approves
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet, "pending")
    plan = make_plan(rpc, venue, usdc, weth, USDC_1000, "paper-1")

    result = make_executor(rpc, ledger, devnet, mode=TradeMode.PAPER).execute(plan)

    assert (result.status, result.amount_in, result.amount_out, result.tx_hash) == (
        OrderStatus.SIMULATED, USDC_1000, plan.quote.amount_out, None)
    assert result.gas_used > 0
    [order] = rows(ledger, OrderRow)
    assert (order.status, order.mode, order.tx_hash, order.nonce, order.error) == (
        OrderStatus.SIMULATED, TradeMode.PAPER, None, None, None)
    [fill] = rows(ledger, FillRow)
    assert (fill.order_id, fill.amount_in, fill.amount_out, fill.tx_hash, fill.nonce,
            fill.block_number) == (order.id, USDC_1000, plan.quote.amount_out, None, None, None)
    assert rows(ledger, TransactionRow) == []
    assert balances(chain, devnet) == before
    assert nonce_of(chain, devnet.hot_wallet, "pending") == nonce0
    assert allowance(chain, usdc, devnet.hot_wallet, router) == 0


def test_paper_mode_reports_the_revert_reason(
    rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest, venues: dict[str, Venue],
    tokens: dict[str, Token],
) -> None:
    probe = make_plan(rpc, venues["uniswap-v2"], tokens["USDC"], tokens["WETH"], USDC_1000, "x")
    plan = make_plan(rpc, venues["uniswap-v2"], tokens["USDC"], tokens["WETH"], USDC_1000,
                     "paper-revert", min_out=probe.quote.amount_out + 1)
    result = make_executor(rpc, ledger, devnet, mode=TradeMode.PAPER).execute(plan)
    assert result.status is OrderStatus.FAILED
    assert result.error == "paper simulation reverted: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    assert rows(ledger, FillRow) == [] and rows(ledger, TransactionRow) == []


# -- 8. the hot-wallet key stays secret ---------------------------------------------------
def test_hot_wallet_key_never_leaks(
    manual_mining: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token], caplog: pytest.LogCaptureFixture,
) -> None:
    chain = manual_mining
    caplog.set_level(logging.DEBUG)
    usdc, weth = tokens["USDC"], tokens["WETH"]
    texts: list[str] = []

    def failure(exc: BaseException) -> None:
        texts.append("".join(traceback.format_exception(exc)))

    chain.request("evm_setAutomine", [True])
    approve_directly(chain, devnet, weth, router_of(venues["sushiswap-v2"]), 10**17)
    live = make_executor(rpc, ledger, devnet)
    texts += [repr(live), str(live), repr(vars(live)), repr(live.signer), str(live.signer)]
    assert live.execute(make_plan(rpc, venues["uniswap-v2"], usdc, weth, USDC_1000,
                                  "secret-1")).status is OrderStatus.FILLED
    failed = live.execute(make_plan(rpc, venues["uniswap-v3"], usdc, weth, USDC_1000,
                                    "secret-2", min_out=10**30))
    assert failed.status is OrderStatus.FAILED and failed.error is not None
    texts.append(failed.error)

    # A swap left stuck after its last fee bump raises; reconcile later finishes it.
    chain.request("evm_setAutomine", [False])
    stuck = make_executor(rpc, ledger, devnet,
                          settings=ExecutorSettings(receipt_timeout_s=0.05, max_replacements=0))
    with pytest.raises(NetworkError, match="stays SUBMITTED for reconcile") as stuck_exc:
        stuck.execute(make_plan(rpc, venues["sushiswap-v2"], weth, usdc, 10**17, "secret-3"))
    failure(stuck_exc.value)
    chain.request("evm_mine")
    [settled] = make_executor(rpc, ledger, devnet).reconcile()
    assert (settled.client_order_id, settled.status) == ("secret-3", OrderStatus.FILLED)

    with pytest.raises(SystemFault) as wrong_wallet:
        Executor(env=ENV, client=rpc, ledger=ledger, address=devnet.cold_wallet,
                 chain_id=devnet.chain_id, mode=TradeMode.LIVE, signer=HotWallet(ANVIL_KEY_1))
    failure(wrong_wallet.value)
    with pytest.raises(ConfigError) as bad_key:
        HotWallet(ANVIL_KEY_1[:-1] + "z")  # one character off: must not be echoed
    failure(bad_key.value)
    with pytest.raises(TypeError) as pickled:
        pickle.dumps(live)
    failure(pickled.value)

    ledger_text = repr(dump_ledger(ledger))
    assert "secret-1" in ledger_text and "raw_tx" in ledger_text  # the dump is complete
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    key_fragment = KEY_HEX[:-1]  # also catches the corrupted key above
    for text in [*texts, ledger_text, caplog.text]:
        assert key_fragment not in text.lower()


if __name__ == "__main__":
    _child(sys.argv[1:])


def test_fee_bumps_stop_at_the_gas_price_cap(
    manual_mining: RpcClient, rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest,
    venues: dict[str, Venue], tokens: dict[str, Token],
) -> None:
    """A stuck swap is not outbid past the risk limit's gas cap: it stays for reconcile."""
    chain = manual_mining
    venue, usdc, weth = venues["uniswap-v2"], tokens["USDC"], tokens["WETH"]
    chain.request("evm_setAutomine", [True])
    approve_directly(chain, devnet, usdc, router_of(venue), USDC_1000)
    chain.request("evm_setAutomine", [False])
    plan = make_plan(rpc, venue, usdc, weth, USDC_1000, "capped")
    cap = suggest_fees(rpc).max_fee_per_gas  # any bump of the first offer passes it
    settings = ExecutorSettings(receipt_timeout_s=0.3, max_replacements=2,
                                max_fee_per_gas_cap=cap)
    executor = make_executor(rpc, ledger, devnet, settings=settings)
    with pytest.raises(NetworkError, match="gas price cap"):
        executor.execute(plan)
    [swap] = swaps_of(ledger, "capped")  # the original only: no replacement was signed
    assert swap.status is TxStatus.SENT and swap.max_fee_per_gas <= cap
    [order] = rows(ledger, OrderRow)
    assert order.status is OrderStatus.SUBMITTED


def test_nothing_is_sent_past_the_deadline_even_without_an_on_chain_one(
    rpc: RpcClient, ledger: Ledger, devnet: DevnetManifest, tokens: dict[str, Token],
    zeroex: FakeZeroEx,
) -> None:
    """An aggregator's prepared transaction has no deadline of its own: the executor refuses
    to sign it once the plan's deadline has passed."""
    venue = ZeroExVenue("0x", api_url=zeroex.url, chain_id=devnet.chain_id,
                        taker=devnet.hot_wallet, api_key=zeroex.api_key, slippage_bps=30)
    usdc, weth = tokens["USDC"], tokens["WETH"]
    quote = venue.quote_exact_in(usdc, weth, USDC_1000)
    intent = OrderIntent("late", "test", usdc, weth, USDC_1000, venue=venue.name)
    plan = LegPlan(intent, venue, quote, min_amount_out(quote.amount_out, SLIPPAGE_BPS),
                   int(time.time()) - 1)
    nonce0 = nonce_of(rpc, devnet.hot_wallet)
    result = make_executor(rpc, ledger, devnet).execute(plan)
    assert (result.status, result.error) == (OrderStatus.FAILED,
                                             "deadline passed before sending")
    assert swaps_of(ledger, "late") == []
    assert nonce_of(rpc, devnet.hot_wallet) == nonce0  # not even an approval went out
