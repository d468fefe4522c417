"""Wallet A's balances reconciled against the ledger, cycle by cycle.

The problem: the ledger records every fill, gas payment and sweep, yet nothing checked that the
chain agrees. Funds leaving wallet A without the ledger knowing (a leaked key, a rogue approval
being drained, a bug that sends without recording) went unnoticed. Each cycle's snapshot is now
stored in ``balance_snapshots`` and compared with what the ledger says it should be:

    expected = previous snapshot's balance
               + fills' ``amount_out`` in that token       (fills mined after that snapshot)
               - fills' ``amount_in`` of that token
               - profit sweeps of that token                (sweep transactions mined since)
               - gas of every mined or reverted transaction (native balance only)

Attribution is by block number, not by time: a snapshot at block P already contains every
effect of block P, so exactly the ledger's transactions mined in blocks P+1..C explain the move
to the snapshot at block C, however late the ledger recorded them.

``compare_balances`` is the pure comparison; ``previous_snapshot`` and ``known_flows`` read its
inputs from the ledger (as ``dexpilot.ledger.pnl`` does for the daily limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlmodel import col, func, select

from dexpilot.ledger import checks
from dexpilot.ledger.models import (
    NONCE_CONSUMING_TX_STATUSES,
    BalanceSnapshotRow,
    FillRow,
    OrderRow,
    ProfitSweepRow,
    TransactionRow,
    TxStatus,
)
from dexpilot.ledger.store import Ledger

# The native coin has no contract; its snapshots are stored under the address wallets and
# aggregators conventionally use for it (EIP-7528), which no ERC-20 can have.
NATIVE_TOKEN = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"


@dataclass(frozen=True, slots=True)
class KnownFlows:
    """What the ledger knows moved wallet A's balances between two snapshots (raw units, by
    token address; gas in wei of the native coin)."""

    inflows: Mapping[str, int] = field(default_factory=dict)
    outflows: Mapping[str, int] = field(default_factory=dict)
    gas_wei: int = 0


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    """One token whose chain balance is not what the ledger expects."""

    token: str
    previous: int
    expected: int
    actual: int

    @property
    def difference(self) -> int:
        """Chain minus ledger: negative is a shortfall, positive a deposit."""
        return self.actual - self.expected


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    shortfalls: tuple[BalanceDifference, ...] = ()
    deposits: tuple[BalanceDifference, ...] = ()


def expected_balance(token: str, previous: int, flows: KnownFlows, *, native: str) -> int:
    gas = flows.gas_wei if token == native else 0
    return previous + flows.inflows.get(token, 0) - flows.outflows.get(token, 0) - gas


def compare_balances(previous: Mapping[str, int], flows: KnownFlows, actual: Mapping[str, int],
                     *, native: str = NATIVE_TOKEN, tolerance: int = 0) -> BalanceCheck:
    """The chain's balances (``actual``) against the ledger's expectation from ``previous``.

    What is a fault, and why:

    - **A shortfall** (chain balance lower than expected by more than ``tolerance`` raw units)
      is a fault: funds left wallet A that no fill, gas payment or sweep in the ledger explains,
      so the ledger no longer describes the wallet and trading on it is unsafe.
    - **A surplus** (chain balance higher than expected) is not: anyone can send tokens to an
      address (an operator's deposit, a noise trader, an airdrop), and that takes nothing from
      the bot. It is reported in ``deposits`` for the caller to log; the new snapshot records it.
    - A token with no previous balance (newly configured) or no current one (unreadable this
      cycle, quarantined elsewhere) cannot be compared and is left out.

    An unexplained decrease hidden by an equal deposit in the same interval cannot be seen
    from balances alone; that is the limit of this check.
    """
    shortfalls: list[BalanceDifference] = []
    deposits: list[BalanceDifference] = []
    for token in sorted(previous.keys() & actual.keys()):
        diff = BalanceDifference(token, previous[token],
                                 expected_balance(token, previous[token], flows, native=native),
                                 actual[token])
        if diff.difference < -tolerance:
            shortfalls.append(diff)
        elif diff.difference > 0:
            deposits.append(diff)
    return BalanceCheck(tuple(shortfalls), tuple(deposits))


def previous_snapshot(ledger: Ledger, wallet: str) -> tuple[int, dict[str, int]] | None:
    """Wallet A's most recent snapshot: its block and the balance of each token recorded at
    that block (``None`` before the first)."""
    address = checks.address(wallet, "wallet")
    with ledger.session(write=False) as session:
        block = session.exec(select(func.max(BalanceSnapshotRow.block_number))
                             .where(BalanceSnapshotRow.wallet == address)).one()
        if block is None:
            return None
        rows = session.exec(select(BalanceSnapshotRow)
                            .where(BalanceSnapshotRow.wallet == address,
                                   BalanceSnapshotRow.block_number == block)
                            .order_by(col(BalanceSnapshotRow.id))).all()
    # Several snapshots of one block agree (same chain state); the last one wins.
    return int(block), {row.token: row.amount for row in rows}


def known_flows(ledger: Ledger, *, env: str, wallet: str, after_block: int,
                to_block: int) -> KnownFlows:
    """The fills, sweeps and gas of ``wallet``'s transactions mined in blocks
    ``after_block + 1 .. to_block``. Paper fills have no block and move nothing on chain."""
    address = checks.address(wallet, "wallet")
    env = checks.env(env)
    inflows: dict[str, int] = {}
    outflows: dict[str, int] = {}
    in_range = (col(FillRow.block_number) > after_block, col(FillRow.block_number) <= to_block)
    fills = (select(FillRow).join(OrderRow, col(FillRow.order_id) == col(OrderRow.id))
             .where(OrderRow.wallet == address, OrderRow.env == env,
                    col(FillRow.tx_hash).is_not(None), *in_range))
    mined = (TransactionRow.wallet == address, TransactionRow.env == env,
             col(TransactionRow.block_number) > after_block,
             col(TransactionRow.block_number) <= to_block)
    gas = select(TransactionRow.gas_used, TransactionRow.effective_gas_price).where(
        *mined, col(TransactionRow.status).in_(sorted(s.value for s in
                                                      NONCE_CONSUMING_TX_STATUSES)))
    sweeps = (select(ProfitSweepRow)
              .join(TransactionRow, col(ProfitSweepRow.tx_hash) == col(TransactionRow.tx_hash))
              .where(*mined, TransactionRow.status == TxStatus.MINED))
    with ledger.session(write=False) as session:
        for fill in session.exec(fills).all():
            outflows[fill.token_in] = outflows.get(fill.token_in, 0) + fill.amount_in
            inflows[fill.token_out] = inflows.get(fill.token_out, 0) + fill.amount_out
        for sweep in session.exec(sweeps).all():
            outflows[sweep.token] = outflows.get(sweep.token, 0) + sweep.amount
        gas_wei = sum((used or 0) * (price or 0) for used, price in session.exec(gas).all())
    return KnownFlows(inflows, outflows, gas_wei)


def describe_shortfall(diff: BalanceDifference, symbol: str) -> str:
    return (f"{symbol} ({diff.token}): chain {diff.actual}, ledger expects {diff.expected} "
            f"(previous snapshot {diff.previous}), {-diff.difference} unaccounted for")


__all__ = [
    "NATIVE_TOKEN",
    "BalanceCheck",
    "BalanceDifference",
    "KnownFlows",
    "compare_balances",
    "describe_shortfall",
    "expected_balance",
    "known_flows",
    "previous_snapshot",
]
