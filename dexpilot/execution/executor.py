"""The order manager and executor: one swap leg from ledger row to fill.

Order of events for a live leg, each step durable before the next:

0. the swap is built from the plan (pure: bad bounds are refused before anything is written);
1. the order is written (NEW) — before anything is signed;
2. the whole trade is simulated (``eth_simulateV1``: the approval, if the spender lacks
   allowance, then the swap); a trade that would revert is recorded FAILED and nothing is
   signed, so wallet A's nonce, gas and allowances stay as they were;
3. the fees are fixed: at most the max fee per gas risk approved (and the gas price cap); a
   base fee that has since risen above it fails the order unsent (the next cycle re-checks);
4. if needed, an *exact* approval is signed, recorded, sent, mined, and the swap checked again
   (``eth_call``) on the state after it;
5. the swap is signed (EIP-1559, nonce from the manager), recorded with its raw bytes and the
   order becomes SUBMITTED — only then is it broadcast;
6. the receipt is awaited; a transaction stuck past the timeout is replaced with the same
   nonce and data at higher fees (each replacement recorded before it is sent);
7. the receipt decides: status 1 -> fill from the Transfer logs to wallet A, FILLED, or
   SHORT_FILLED when less than ``amountOutMin`` arrived (the token is then quarantined and an
   error row written); status 0 -> FAILED with the revert reason (read by replaying the
   transaction at its position in its block). Never re-sent blindly.

``reconcile()`` finishes whatever a killed process left: a mined transaction becomes its
fill, a transaction the node lost is re-broadcast byte for byte (idempotent: same hash, same
nonce) or, past its deadline, cancelled (a zero-value self-transfer takes the nonce and the
order becomes CANCELLED), and an order that never got a transaction is cancelled. Orders whose
transactions are already resolved in the ledger (a process killed between recording a receipt
and settling the order) are settled from their receipt. Running it again changes nothing.
Paper mode records the would-be fill from an ``eth_simulateV1`` of approve + swap.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from dexpilot.chain.failover import with_failover
from dexpilot.chain.reverts import decode_revert
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.token_probe import OTHER_ADDRESS
from dexpilot.errors import ApiError, NetworkError, SystemFault
from dexpilot.execution.fees import Fees, suggest_fees
from dexpilot.execution.nonces import NonceManager
from dexpilot.execution.receipts import token_flows
from dexpilot.execution.wallet import HotWallet, SignedTx
from dexpilot.ledger import (
    NONCE_CONSUMING_TX_STATUSES,
    PENDING_STATUSES,
    UNRESOLVED_TX_STATUSES,
    ErrorKind,
    Ledger,
    OrderRow,
    OrderStatus,
    TradeMode,
)
from dexpilot.ledger.models import TransactionRow, TxPurpose, TxStatus
from dexpilot.money import Token
from dexpilot.strategy.intent import OrderIntent
from dexpilot.venues.base import Quote, SwapTx, Venue

APPROVE = function_signature_to_4byte_selector("approve(address,uint256)")
ALLOWANCE = function_signature_to_4byte_selector("allowance(address,address)")
APPROVE_GAS = 100_000
TRANSFER = function_signature_to_4byte_selector("transfer(address,uint256)")
TRANSFER_GAS = 100_000
CANCEL_GAS = 21_000
# How nodes say "I have this transaction already" (geth, anvil/reth, parity/erigon).
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
log = logging.getLogger(__name__)
T = TypeVar("T")


def _no_checkpoint(name: str) -> None:
    """Tests pass a checkpoint that kills the process at a named step; production does not."""


# A whole trading session killed mid-trade (a flow run in a subprocess) builds its executor
# itself, so its test cannot pass a checkpoint: it names one here instead. Read only in the
# `test` environment, so no setting of dev or prod can make the bot kill itself.
KILL_AT_ENV = "DEXPILOT_TEST_KILL_AT"


def checkpoint_for(env: str) -> Callable[[str], None]:
    """SIGKILL this process at the checkpoint named by ``DEXPILOT_TEST_KILL_AT`` (test env)."""
    point = os.environ.get(KILL_AT_ENV, "") if env == "test" else ""
    if not point:
        return _no_checkpoint

    def kill_at(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill_at


def swap_deadline(latest_block_timestamp: int, seconds: int) -> int:
    """A swap's deadline: ``seconds`` after the latest block, or after now if the chain has
    been idle (a dev chain makes no blocks without transactions, and its next block takes the
    current time, so a deadline from an old block would already have passed)."""
    return max(latest_block_timestamp, int(time.time())) + seconds


@dataclass(frozen=True, slots=True)
class LegPlan:
    """One swap to make: the intent, the venue's quote and the bounds computed for it."""

    intent: OrderIntent
    venue: Venue
    quote: Quote
    min_amount_out: int
    deadline: int  # unix seconds, from the latest block's timestamp
    # The max fee per gas risk approved for this trade: the first send offers at most this.
    max_fee_per_gas: int | None = None

    def __post_init__(self) -> None:
        if self.min_amount_out <= 0:
            raise ValueError(f"{self.intent.client_order_id}: min_amount_out must be > 0")
        if self.max_fee_per_gas is not None and self.max_fee_per_gas <= 0:
            raise ValueError(f"{self.intent.client_order_id}: max_fee_per_gas must be > 0")


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    client_order_id: str
    status: OrderStatus
    amount_in: int = 0
    amount_out: int = 0
    tx_hash: str | None = None
    gas_used: int = 0
    gas_cost_wei: int = 0
    error: str | None = None

    @property
    def filled(self) -> bool:
        """Filled as planned; a short fill is not (an arbitrage's next leg does not trade)."""
        return self.status in (OrderStatus.FILLED, OrderStatus.SIMULATED)


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    receipt_timeout_s: float = 30.0
    max_replacements: int = 2
    fee_bump_pct: int = 15
    poll_interval_s: float = 0.05
    approval_cap: int | None = None  # approve this much instead of the exact amount, if set
    max_fee_per_gas_cap: int | None = None  # fee bumps stop here (the risk limit's gas cap)


class Executor:
    def __init__(
        self,
        *,
        env: str,
        client: RpcClient,
        ledger: Ledger,
        address: str,
        chain_id: int,
        mode: TradeMode,
        signer: HotWallet | None = None,
        settings: ExecutorSettings | None = None,
        checkpoint: Callable[[str], None] | None = None,
        token_symbols: Mapping[str, str] | None = None,
    ) -> None:
        if mode is TradeMode.LIVE and signer is None:
            raise ValueError("live trading needs the hot-wallet signer")
        if signer is not None and signer.address != address:
            raise SystemFault(f"signer {signer.address} is not wallet A {address}")
        self.env = env
        self.client = client
        self.ledger = ledger
        self.address = address
        self.chain_id = chain_id
        self.mode = mode
        self.signer = signer
        self.settings = settings or ExecutorSettings()
        self.checkpoint = checkpoint or checkpoint_for(env)
        self.nonces = NonceManager(client, address)
        # address -> symbol, to name a token the executor quarantines
        self.token_symbols = {a.lower(): sym for a, sym in (token_symbols or {}).items()}

    # -- entry points ---------------------------------------------------------------------
    def execute(self, plan: LegPlan) -> ExecutionResult:
        intent, quote = plan.intent, plan.quote
        # Pure: a swap the venue refuses to build (bad bounds) is refused before any write.
        swap = plan.venue.build_swap(quote, recipient=self.address,
                                     min_amount_out=plan.min_amount_out, deadline=plan.deadline)
        self.ledger.record_order(
            client_order_id=intent.client_order_id, env=self.env, wallet=self.address,
            venue=quote.venue, token_in=intent.token_in.address,
            token_out=intent.token_out.address, amount_in=intent.amount_in,
            min_amount_out=plan.min_amount_out, expected_amount_out=quote.amount_out,
            mode=self.mode, strategy=intent.strategy, group_id=intent.group_id,
        )
        self._log("order written", intent.client_order_id, venue=quote.venue)
        self.checkpoint("order_written")
        if self.mode is TradeMode.PAPER:
            return self._simulate_paper(plan, swap)
        if plan.deadline <= int(time.time()):
            return self._fail(intent.client_order_id, "deadline passed before sending")
        try:
            # Every read before a send follows the error policy: an endpoint that cannot
            # answer is retried, then the next is asked, and the order fails unsent only
            # when none can.
            approval, reason, fees = self._read(lambda: self._prepare(plan, swap))
        except (NetworkError, ApiError) as exc:
            return self._fail(intent.client_order_id, f"before sending: {exc}")
        if reason is not None:
            return self._fail(intent.client_order_id, f"simulation reverted: {reason}")
        if isinstance(fees, str):
            return self._fail(intent.client_order_id, fees)
        if approval is not None:
            try:
                self._approve(plan, swap.spender, approval, fees)
            except (NetworkError, ApiError) as exc:
                # The approval is in the ledger: the next reconcile settles it by its hash.
                return self._fail(intent.client_order_id,
                                  f"before sending the swap: its approval failed: {exc}")
            try:
                reason = self._read(lambda: self._would_revert(swap))
            except (NetworkError, ApiError) as exc:
                return self._fail(intent.client_order_id, f"before sending: {exc}")
            if reason is not None:
                return self._fail(intent.client_order_id,
                                  f"simulation after the approval reverted: {reason}")
        if plan.deadline <= int(time.time()):
            # Checked again after the approval's wait: routers revert past their deadline by
            # themselves, an aggregator's prepared transaction carries none.
            return self._fail(intent.client_order_id, "deadline passed before sending")
        try:
            nonce = self._read(self.nonces.next)
        except (NetworkError, ApiError) as exc:
            return self._fail(intent.client_order_id, f"before sending: {exc}")
        signed = self._sign(swap.to, swap.data, swap.value, swap.gas_limit, nonce, fees)
        self.ledger.record_transaction(
            env=self.env, wallet=self.address, purpose=TxPurpose.SWAP, tx_hash=signed.tx_hash,
            nonce=signed.nonce, raw_tx=signed.raw, max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas, gas_limit=swap.gas_limit,
            order_client_id=intent.client_order_id, deadline=plan.deadline,
        )
        self.ledger.update_order_status(intent.client_order_id, OrderStatus.SUBMITTED,
                                        tx_hash=signed.tx_hash, nonce=signed.nonce)
        self.checkpoint("swap_signed")
        self._broadcast(signed)
        self._log("swap sent", intent.client_order_id, signed.tx_hash, quote.venue)
        self.checkpoint("swap_sent")
        receipt = self._await_with_replacement(signed, swap, fees, intent.client_order_id)
        result = self._settle(intent.client_order_id, receipt)
        self._log(f"order {result.status.value}", intent.client_order_id, result.tx_hash,
                  quote.venue, error=result.error)
        return result

    def reconcile(self) -> list[ExecutionResult]:
        """Finish what an earlier (possibly killed) process left pending for this wallet."""
        results: list[ExecutionResult] = []
        by_nonce: dict[int, list[TransactionRow]] = {}
        for tx in self.ledger.unresolved_transactions(self.address, env=self.env):
            by_nonce.setdefault(tx.nonce, []).append(tx)
        for nonce in sorted(by_nonce):
            result = self._reconcile_nonce(nonce, by_nonce[nonce])
            if result is not None:
                results.append(result)
        # Every transaction of this wallet is now resolved (a pending one raised above), so
        # each order still NEW or SUBMITTED is settled from what its transactions became.
        for order in self.ledger.pending_orders(self.address, env=self.env):
            result = self._reconcile_order(order)
            if result is not None:
                results.append(result)
        for result in results:
            self._log(f"reconciled: {result.status.value}", result.client_order_id,
                      result.tx_hash, error=result.error)
        self.nonces.forget()
        return results

    def __repr__(self) -> str:
        return f"Executor(env={self.env}, wallet={self.address}, mode={self.mode.value})"

    def _log(self, message: str, order_id: str | None, tx_hash: str | None = None,
             venue: str | None = None, **fields: Any) -> None:
        """One structured line per step of a trade (``extra=``: the JSON log's fields)."""
        log.info("%s: %s", order_id, message, extra={
            "order_id": order_id, "tx_hash": tx_hash, "venue": venue, "env": self.env,
            "mode": self.mode.value, **fields})

    # -- live steps -----------------------------------------------------------------------
    def _sign(self, to: str, data: str, value: int, gas: int, nonce: int, fees: Fees) -> SignedTx:
        assert self.signer is not None
        return self.signer.sign({
            "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": to, "data": data,
            "value": value, "gas": gas, "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        })

    def _read(self, call: Callable[[], T]) -> T:
        """An idempotent call (a read, a simulation, re-sending signed bytes) under the error
        policy: retried, then failed over."""
        return with_failover(self.client, call)

    def _prepare(self, plan: LegPlan, swap: SwapTx) -> tuple[int | None, str | None, Fees | str]:
        """The reads before a send: the approval needed, why the trade would revert (or
        ``None``), the fees (or why they are out of bounds). Idempotent: failover repeats it."""
        approval = self._approval_needed(plan, swap.spender)
        return approval, self._simulate_trade(plan, swap, approval), self._fees_for(plan)

    def _broadcast(self, signed: SignedTx) -> None:
        """Hand the signed bytes to the node, under the error policy. Re-sending them is safe
        (same bytes, same hash and nonce: at most one lands), so a send whose answer was lost
        is sent again, and to the next endpoint when this one cannot take it."""

        def send() -> None:
            try:
                self.client.request("eth_sendRawTransaction", [signed.raw])
            except ApiError as exc:
                # The identical bytes are already in the node's pool: nothing new sent. A
                # resend of bytes the node took before the answer was lost may also be refused
                # ("nonce too low": already mined); the node knowing the hash says so.
                if any(phrase in str(exc).lower() for phrase in _ALREADY_KNOWN):
                    return
                if self._node_knows(signed.tx_hash):
                    return
                raise

        self._read(send)
        self.ledger.update_transaction(signed.tx_hash, TxStatus.SENT)

    def _node_knows(self, tx_hash: str) -> bool:
        try:
            return self.client.request("eth_getTransactionByHash", [tx_hash]) is not None
        except (ApiError, NetworkError):
            return False

    def _approval_needed(self, plan: LegPlan, spender: str) -> int | None:
        """The exact approval the swap needs (``None``: the allowance already covers it)."""
        token = plan.intent.token_in.address
        data = "0x" + (ALLOWANCE + encode(["address", "address"], [self.address, spender])).hex()
        allowance = int(self.client.request("eth_call", [{"to": token, "data": data}, "latest"]),
                        16)
        if allowance >= plan.intent.amount_in:
            return None
        return max(plan.intent.amount_in, self.settings.approval_cap or 0)

    def _approve(self, plan: LegPlan, spender: str, amount: int, fees: Fees) -> None:
        approve = "0x" + (APPROVE + encode(["address", "uint256"], [spender, amount])).hex()
        tx_hash = self._send_token_call(plan.intent.token_in.address, approve, APPROVE_GAS,
                                        TxPurpose.APPROVE, plan.intent.client_order_id, fees)
        self._log("approval mined", plan.intent.client_order_id, tx_hash, plan.quote.venue)

    def _simulate_trade(self, plan: LegPlan, swap: SwapTx, approval: int | None) -> str | None:
        """Why the whole trade (approval, then swap) would revert on the latest state, or
        ``None`` if it would go through. Nothing is signed before this answers."""
        calls = self._simulate(plan, swap, approval)
        if approval is not None and int(calls[0]["status"], 16) != 1:
            return f"the approval: {_call_error(calls[0])}"
        if int(calls[-1]["status"], 16) != 1:
            return _call_error(calls[-1]) + self._transfer_diagnosis(plan)
        return None

    def _transfer_diagnosis(self, plan: LegPlan) -> str:
        """Why a swap reverted when the cause is a token itself: routers report a failed
        token transfer generically (``TRANSFER_FROM_FAILED``), so try plain transfers from
        wallet A of what the swap sells (its amount) and of what it buys (0) and quote the
        token's own words (``account frozen``, ``paused``)."""
        for token, amount in ((plan.intent.token_in, plan.intent.amount_in),
                              (plan.intent.token_out, 0)):
            found = self._plain_transfer_fails(token, amount)
            if found:
                return found
        return ""

    def _plain_transfer_fails(self, token: Token, amount: int) -> str:
        data = "0x" + (TRANSFER + encode(["address", "uint256"], [OTHER_ADDRESS, amount])).hex()
        try:
            answer = self.client.request("eth_call", [
                {"from": self.address, "to": token.address, "data": data}, "latest"])
        except ApiError as exc:
            message = _rpc_message(exc)
            if "revert" not in message.lower():
                return ""
            return (f" (a plain transfer of {token.symbol} from wallet A reverts too: "
                    f"{_bare_reason(message)}: wallet A is frozen or blacklisted by the token, "
                    f"or the token is paused)")
        except NetworkError:
            return ""
        if isinstance(answer, str) and answer.startswith("0x") and int(answer, 16) == 0 \
                and len(answer) > 2:
            return f" (a transfer of {token.symbol} from wallet A returns false)"
        return ""

    def _simulate(self, plan: LegPlan, swap: SwapTx, approval: int | None) -> list[Any]:
        """``eth_simulateV1`` of [approve,] swap from wallet A; the calls' results in order."""
        calls: list[dict[str, str]] = []
        if approval is not None:
            approve = "0x" + (APPROVE + encode(["address", "uint256"],
                                               [swap.spender, approval])).hex()
            calls.append({"from": self.address, "to": plan.intent.token_in.address,
                          "data": approve})
        calls.append({"from": self.address, "to": swap.to, "data": swap.data,
                      "value": hex(swap.value), "gas": hex(swap.gas_limit)})
        result = self.client.request("eth_simulateV1", [
            {"blockStateCalls": [{"calls": calls}], "validation": False}, "latest"])
        try:
            answered = list(result[0]["calls"])
        except (TypeError, KeyError, IndexError) as exc:
            raise ApiError(f"eth_simulateV1 answered in an unknown shape: {str(result)[:200]}"
                           ) from exc
        if len(answered) != len(calls):
            raise ApiError(f"eth_simulateV1 answered {len(answered)} calls for {len(calls)}")
        return answered

    def _fees_for(self, plan: LegPlan) -> Fees | str:
        """The first send's fees: the node's suggestion, but never above the max fee per gas
        risk approved nor the gas price cap. A text (the order fails unsent) if the base fee
        has since risen so far that a transaction within the ceiling could not be mined."""
        fresh = suggest_fees(self.client)
        ceilings = [c for c in (plan.max_fee_per_gas, self.settings.max_fee_per_gas_cap)
                    if c is not None]
        if not ceilings or fresh.max_fee_per_gas <= min(ceilings):
            return fresh
        ceiling = min(ceilings)
        priority = min(fresh.max_priority_fee_per_gas, ceiling)
        if fresh.base_fee_per_gas + priority > ceiling:
            return (f"gas price rose after the risk check: the base fee of "
                    f"{fresh.base_fee_per_gas} wei/gas plus the tip of {priority} wei/gas is "
                    f"above the max fee of {ceiling} wei/gas risk approved; not sent, the next "
                    f"cycle checks it again")
        return Fees(ceiling, priority, fresh.base_fee_per_gas)

    def transfer(self, token: Token, to: str, amount: int) -> str:
        """Send ``amount`` of ``token`` from wallet A to ``to`` (the profit sweep); returns the
        mined transaction's hash. Recorded before it is sent, like every transaction."""
        if self.mode is not TradeMode.LIVE:
            raise SystemFault("transfers need live mode: paper mode never sends")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError(f"transfer amount must be a positive int, got {amount!r}")
        data = "0x" + (TRANSFER + encode(["address", "uint256"], [to, amount])).hex()
        reason = self._read(lambda: self._would_revert(
            SwapTx(token.address, data, 0, TRANSFER_GAS, to)))
        if reason is not None:
            raise ApiError(f"transfer of {amount} {token.symbol} to {to} would revert: {reason}")
        return self._send_token_call(token.address, data, TRANSFER_GAS, TxPurpose.SWEEP, None)

    def _send_token_call(self, token: str, data: str, gas: int, purpose: TxPurpose,
                         order_client_id: str | None, fees: Fees | None = None) -> str:
        """Sign, record, broadcast and await one call to a token contract; raise if reverted."""
        fees = fees or self._read(lambda: suggest_fees(self.client))
        signed = self._sign(token, data, 0, gas, self._read(self.nonces.next), fees)
        self.ledger.record_transaction(
            env=self.env, wallet=self.address, purpose=purpose, tx_hash=signed.tx_hash,
            nonce=signed.nonce, raw_tx=signed.raw, max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas, gas_limit=gas,
            order_client_id=order_client_id,
        )
        self._broadcast(signed)
        receipt = self._wait_any([signed.tx_hash], self.settings.receipt_timeout_s)
        if receipt is None:
            raise NetworkError(f"no receipt for {purpose.value} {signed.tx_hash} within "
                               f"{self.settings.receipt_timeout_s} s; reconcile settles it")
        self._record_receipt(signed.tx_hash, receipt)
        if int(receipt["status"], 16) != 1:
            raise ApiError(f"{purpose.value} {signed.tx_hash} reverted")
        return signed.tx_hash

    def _would_revert(self, swap: SwapTx) -> str | None:
        call = {"from": self.address, "to": swap.to, "data": swap.data, "value": hex(swap.value),
                "gas": hex(swap.gas_limit)}
        try:
            self.client.request("eth_call", [call, "latest"])
        except ApiError as exc:
            message = _rpc_message(exc)
            if "revert" not in message.lower():
                raise  # the node refused the call for another reason: not a revert
            return _bare_reason(message)
        return None

    def _await_with_replacement(
        self, signed: SignedTx, swap: SwapTx, fees: Fees, client_order_id: str
    ) -> dict[str, Any]:
        hashes = [signed.tx_hash]
        current_fees = fees
        for attempt in range(self.settings.max_replacements + 1):
            receipt = self._wait_any(hashes, self.settings.receipt_timeout_s)
            if receipt is not None:
                return receipt
            if attempt == self.settings.max_replacements:
                break
            bumped = current_fees.bumped(self.settings.fee_bump_pct)
            cap = self.settings.max_fee_per_gas_cap
            if cap is not None and bumped.max_fee_per_gas > cap:
                raise NetworkError(
                    f"order {client_order_id}: nonce {signed.nonce} not mined, and a fee bump "
                    f"to {bumped.max_fee_per_gas} wei/gas would pass the gas price cap {cap}; "
                    "it stays SUBMITTED for reconcile")
            current_fees = bumped
            replacement = self._sign(swap.to, swap.data, swap.value, swap.gas_limit,
                                     signed.nonce, current_fees)
            self.ledger.record_transaction(
                env=self.env, wallet=self.address, purpose=TxPurpose.SWAP,
                tx_hash=replacement.tx_hash, nonce=signed.nonce, raw_tx=replacement.raw,
                max_fee_per_gas=current_fees.max_fee_per_gas,
                max_priority_fee_per_gas=current_fees.max_priority_fee_per_gas,
                gas_limit=swap.gas_limit, order_client_id=client_order_id,
                replaces_tx_hash=hashes[-1],
            )
            self.ledger.update_order_status(client_order_id, OrderStatus.SUBMITTED,
                                            tx_hash=replacement.tx_hash, nonce=signed.nonce)
            try:
                self._broadcast(replacement)
            except ApiError:
                # Refused ("nonce too low") because an earlier fee level was just mined?
                receipt = self._wait_any(hashes, 0.0)
                if receipt is not None:
                    return receipt
                raise
            hashes.append(replacement.tx_hash)
        raise NetworkError(
            f"order {client_order_id}: nonce {signed.nonce} not mined after "
            f"{self.settings.max_replacements} fee bumps; it stays SUBMITTED for reconcile"
        )

    def _wait_any(self, hashes: list[str], timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            receipts = self._read(lambda: self.client.batch(
                [("eth_getTransactionReceipt", [h]) for h in hashes]))
            for receipt in receipts:
                if receipt is not None:
                    return dict(receipt)
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.settings.poll_interval_s)

    def _record_receipt(self, tx_hash: str, receipt: Mapping[str, Any],
                        reason: str | None = None) -> None:
        ok = int(receipt["status"], 16) == 1
        if not ok and reason is None:
            reason = self._revert_reason(receipt)
        self.ledger.update_transaction(
            tx_hash, TxStatus.MINED if ok else TxStatus.REVERTED,
            block_number=int(receipt["blockNumber"], 16), gas_used=int(receipt["gasUsed"], 16),
            effective_gas_price=int(receipt.get("effectiveGasPrice", "0x0"), 16),
            error=None if ok else reason,
        )

    def _settle(self, client_order_id: str, receipt: Mapping[str, Any]) -> ExecutionResult:
        """Turn the receipt of the transaction that used the order's nonce into the order's
        final ledger state. Safe to call again for a receipt already recorded."""
        tx_hash = str(receipt["transactionHash"]).lower()
        tx = self.ledger.get_transaction(tx_hash)
        if tx is None:
            raise SystemFault(f"order {client_order_id}: receipt for {tx_hash}, a transaction "
                              "the ledger does not hold")
        ok = int(receipt["status"], 16) == 1
        reason = None if ok else self._revert_reason(receipt)
        if tx.status in UNRESOLVED_TX_STATUSES:
            self._record_receipt(tx_hash, receipt, reason)
        order = self.ledger.get_order(client_order_id)
        assert order is not None
        gas_used = int(receipt["gasUsed"], 16)
        gas_price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        if order.status not in PENDING_STATUSES:  # settled before: nothing more to do
            return ExecutionResult(client_order_id, order.status, tx_hash=order.tx_hash,
                                   error=order.error)
        if tx.purpose is not TxPurpose.SWAP or tx.order_id != order.id:
            # A cancel (or another transaction) took the nonce: the swap can never land.
            error = f"cancelled: nonce {tx.nonce} used by {tx.purpose.value} tx {tx_hash}"
            self.ledger.update_order_status(client_order_id, OrderStatus.CANCELLED, error=error)
            return ExecutionResult(client_order_id, OrderStatus.CANCELLED, tx_hash=tx_hash,
                                   gas_used=gas_used, gas_cost_wei=gas_used * gas_price,
                                   error=error)
        for other in self.ledger.transactions_for_order(client_order_id):
            if (other.purpose is TxPurpose.SWAP and other.tx_hash != tx_hash
                    and other.status in UNRESOLVED_TX_STATUSES):
                self.ledger.update_transaction(other.tx_hash, TxStatus.DROPPED)
        if order.tx_hash != tx_hash or order.status is OrderStatus.NEW:
            # An earlier fee level was mined, not the last replacement; or the process stopped
            # between recording the swap and marking the order SUBMITTED.
            self.ledger.update_order_status(client_order_id, OrderStatus.SUBMITTED,
                                            tx_hash=tx_hash, nonce=tx.nonce)
        if not ok:
            error = f"reverted on chain: {reason}"
            self.ledger.update_order_status(client_order_id, OrderStatus.FAILED, error=error)
            return ExecutionResult(client_order_id, OrderStatus.FAILED, tx_hash=tx_hash,
                                   gas_used=gas_used, gas_cost_wei=gas_used * gas_price,
                                   error=error)
        logs = receipt.get("logs") or []
        sent, _ = token_flows(logs, self.address, order.token_in)
        _, received = token_flows(logs, self.address, order.token_out)
        self.ledger.add_fill(client_order_id, amount_in=sent, amount_out=received,
                             tx_hash=tx_hash, nonce=tx.nonce,
                             block_number=int(receipt["blockNumber"], 16), gas_used=gas_used,
                             effective_gas_price=gas_price)
        if received < order.min_amount_out:
            error = self._short_fill(order, received, tx_hash)
            return ExecutionResult(client_order_id, OrderStatus.SHORT_FILLED, sent, received,
                                   tx_hash, gas_used, gas_used * gas_price, error=error)
        return ExecutionResult(client_order_id, OrderStatus.FILLED, sent, received, tx_hash,
                               gas_used, gas_used * gas_price)

    def _short_fill(self, order: OrderRow, received: int, tx_hash: str) -> str:
        """Less arrived than ``amountOutMin``: the router checked its own arithmetic, the token
        took a cut on the way to wallet A. The token is quarantined (no more buys until an
        operator clears it) and the error recorded; the shortfall is the order's outcome."""
        error = (f"short fill: wallet A received {received} raw units of {order.token_out}, "
                 f"below amountOutMin {order.min_amount_out} (quoted "
                 f"{order.expected_amount_out}); the token takes a cut on transfer")
        details = {"client_order_id": order.client_order_id, "tx_hash": tx_hash,
                   "received": str(received), "min_amount_out": str(order.min_amount_out),
                   "quoted": str(order.expected_amount_out), "token": order.token_out}
        self.ledger.quarantine_token(env=self.env, token=order.token_out,
                                     symbol=self.token_symbols.get(order.token_out.lower(),
                                                                order.token_out[:10]),
                                     source="fill_shortfall", reason=error, actor="executor",
                                     details=details)
        self.ledger.record_error(self.env, ErrorKind.API, "executor", error, details=details)
        log.error("%s: %s", order.client_order_id, error, extra={
            "order_id": order.client_order_id, "tx_hash": tx_hash, "env": self.env})
        return error

    def _revert_reason(self, receipt: Mapping[str, Any]) -> str:
        """Why a mined transaction reverted.

        Exact: trace the transaction where it ran (after whatever came before it in its block,
        e.g. the swap that front-ran it). Nodes without the debug API: replay it as a call on
        the state after its block, then before it.
        """
        tx_hash = receipt["transactionHash"]
        try:
            trace = self.client.request("debug_traceTransaction",
                                        [tx_hash, {"tracer": "callTracer"}])
        except (ApiError, NetworkError):
            trace = None
        if isinstance(trace, dict):
            reason = trace.get("revertReason") or decode_revert(trace.get("output"))
            if reason or trace.get("error"):
                return str(reason or trace["error"])
        tx = self.client.request("eth_getTransactionByHash", [tx_hash])
        if not tx:
            return "reason unavailable"
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"],
                "gas": tx["gas"]}
        block = int(receipt["blockNumber"], 16)
        for at in (block, block - 1):
            try:
                self.client.request("eth_call", [call, hex(at)])
            except ApiError as exc:
                return _bare_reason(_rpc_message(exc))
        return "reason unavailable (replay succeeded)"

    def _fail(self, client_order_id: str, error: str) -> ExecutionResult:
        self.ledger.update_order_status(client_order_id, OrderStatus.FAILED, error=error)
        self._log("order FAILED", client_order_id, error=error)
        return ExecutionResult(client_order_id, OrderStatus.FAILED, error=error)

    # -- reconcile ------------------------------------------------------------------------
    def _reconcile_nonce(self, nonce: int, txs: list[TransactionRow]) -> ExecutionResult | None:
        # The confirmed count first: a transaction of ours mined between the two reads then
        # shows its receipt, instead of looking like a stranger that took the nonce.
        confirmed = self._read(self.nonces.confirmed_count)
        receipts = self._read(lambda: self.client.batch(
            [("eth_getTransactionReceipt", [t.tx_hash]) for t in txs]))
        mined = next((dict(r) for r in receipts if r is not None), None)
        swap_order = next((t for t in txs if t.purpose is TxPurpose.SWAP and t.order_id), None)
        order_id = self._order_client_id(swap_order) if swap_order else None
        if mined is not None:
            if order_id is None:
                # The ledger drops the nonce's other transactions when one is mined.
                self._record_receipt(str(mined["transactionHash"]).lower(), mined)
                return None
            return self._settle(order_id, mined)
        if confirmed > nonce:
            # Another transaction (not one of ours in the ledger) took this nonce; the order
            # pass of ``reconcile`` then cancels the order.
            for t in txs:
                self.ledger.update_transaction(t.tx_hash, TxStatus.DROPPED,
                                               error="nonce consumed by another transaction")
            return None
        latest = txs[-1]
        known = self._read(lambda: self.client.batch(
            [("eth_getTransactionByHash", [t.tx_hash]) for t in txs]))
        if not any(known):
            block = self._read(lambda: self.client.request("eth_getBlockByNumber",
                                                           ["latest", False]))
            if latest.deadline is None or latest.deadline > int(block["timestamp"], 16):
                # Identical bytes: same hash and nonce, so it can land at most once.
                self._broadcast(SignedTx(latest.tx_hash, latest.raw_tx, latest.nonce))
            else:
                self._cancel(nonce, latest)
        receipt = self._wait_any([t.tx_hash for t in self._unresolved_at(nonce)],
                                 self.settings.receipt_timeout_s)
        if receipt is None:
            raise NetworkError(f"nonce {nonce} still pending after reconcile; retry later")
        if order_id is not None:
            return self._settle(order_id, receipt)
        self._record_receipt(str(receipt["transactionHash"]).lower(), receipt)
        return None

    def _unresolved_at(self, nonce: int) -> list[TransactionRow]:
        return [t for t in self.ledger.unresolved_transactions(self.address, env=self.env)
                if t.nonce == nonce]

    def _reconcile_order(self, order: OrderRow) -> ExecutionResult | None:
        """Settle a NEW or SUBMITTED order whose transactions are all resolved."""
        client_order_id = order.client_order_id
        swaps = [t for t in self.ledger.transactions_for_order(client_order_id)
                 if t.purpose is TxPurpose.SWAP]
        if any(t.status in UNRESOLVED_TX_STATUSES for t in swaps):
            return None  # still in flight: the nonce pass raises before we get here
        used = next((t for t in swaps if t.status in NONCE_CONSUMING_TX_STATUSES), None)
        if used is not None:
            # Its receipt is recorded but the order was not settled (process stopped between).
            receipt = self._read(lambda: self.client.request("eth_getTransactionReceipt",
                                                             [used.tx_hash]))
            if receipt is None:
                raise SystemFault(f"order {client_order_id}: the ledger holds a receipt for "
                                  f"{used.tx_hash}, the chain does not")
            return self._settle(client_order_id, dict(receipt))
        if swaps:
            error = f"dropped: nonce {swaps[-1].nonce} used by another transaction"
        else:
            # No swap was signed for it: nothing can be on chain. Its approval (if any) was
            # reconciled above and is harmless: exact amount, spent by nobody.
            error = "never sent: process stopped before signing"
        self.ledger.update_order_status(client_order_id, OrderStatus.CANCELLED, error=error)
        return ExecutionResult(client_order_id, OrderStatus.CANCELLED, error=error)

    def _cancel(self, nonce: int, stale: TransactionRow) -> None:
        """Consume ``nonce`` with a zero-value self-transfer so the stale swap can never land."""
        fees = Fees(stale.max_fee_per_gas, stale.max_priority_fee_per_gas).bumped(
            self.settings.fee_bump_pct)
        fresh = self._read(lambda: suggest_fees(self.client))
        fees = Fees(max(fees.max_fee_per_gas, fresh.max_fee_per_gas),
                    max(fees.max_priority_fee_per_gas, fresh.max_priority_fee_per_gas))
        signed = self._sign(self.address, "0x", 0, CANCEL_GAS, nonce, fees)
        self.ledger.record_transaction(
            env=self.env, wallet=self.address, purpose=TxPurpose.CANCEL, tx_hash=signed.tx_hash,
            nonce=nonce, raw_tx=signed.raw, max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas, gas_limit=CANCEL_GAS,
            replaces_tx_hash=stale.tx_hash,
        )
        self._broadcast(signed)

    def _order_client_id(self, tx: TransactionRow) -> str | None:
        order = self.ledger.order_of(tx)
        return order.client_order_id if order is not None else None

    # -- paper ----------------------------------------------------------------------------
    def _simulate_paper(self, plan: LegPlan, swap: SwapTx) -> ExecutionResult:
        intent = plan.intent
        try:
            calls = self._read(lambda: self._simulate(plan, swap, intent.amount_in))
        except (ApiError, NetworkError) as exc:
            return self._fail(intent.client_order_id, f"paper simulation failed: {exc}")
        swap_call = calls[1]
        if int(swap_call["status"], 16) != 1:
            return self._fail(intent.client_order_id,
                              f"paper simulation reverted: {_call_error(swap_call)}")
        logs = swap_call.get("logs") or []
        sent, _ = token_flows(logs, self.address, intent.token_in.address)
        _, received = token_flows(logs, self.address, intent.token_out.address)
        gas_used = int(swap_call["gasUsed"], 16)
        self.ledger.add_fill(intent.client_order_id, amount_in=sent, amount_out=received,
                             gas_used=gas_used)
        self._log("order SIMULATED", intent.client_order_id, venue=plan.quote.venue)
        return ExecutionResult(intent.client_order_id, OrderStatus.SIMULATED, sent, received,
                               gas_used=gas_used)


def _call_error(call: Mapping[str, Any]) -> str:
    """Why one call of an ``eth_simulateV1`` answer reverted."""
    error = call.get("error", {})
    return decode_revert(call.get("returnData")) or (
        str(error.get("message", "reverted")) if isinstance(error, dict) else str(error))

def _rpc_message(exc: Exception) -> str:
    """The node's own message, without the client's "<url>: <method> failed: " prefix (an RPC
    URL can carry a provider API key, which has no place in the ledger)."""
    return str(exc).split(" failed: ", 1)[-1]


def _bare_reason(message: str) -> str:
    """ "execution reverted: X" -> "X"; a revert without a reason stays as it is."""
    head, sep, rest = message.partition("execution reverted: ")
    return rest if sep and not head.strip() else message
