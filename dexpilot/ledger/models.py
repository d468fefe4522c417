"""The ledger's tables.

Every amount is a raw uint256 integer (``RawAmount``); every time is timezone-aware UTC
(``UtcDateTime``); addresses are EIP-55 checksummed strings and transaction hashes are
lowercase ``0x`` + 64 hex digits (the ``Ledger`` helpers normalise both). Classes end in
``Row`` so they never collide with the domain types they record (``Signal``, ``RiskDecision``).

A change here needs a new migration in ``migrations/versions``; the test suite compares these
models with the migrated schema on SQLite and PostgreSQL and fails on any drift.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dexpilot.ledger.types import JsonDocument, RawAmount, UtcDateTime, utc_now

# Named constraints let Alembic's SQLite batch mode drop or alter them in later migrations.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS_LEN = 42
TX_HASH_LEN = 66
ENV_LEN = 16
NAME_LEN = 64


class OrderStatus(StrEnum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    FILLED = "FILLED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    SIMULATED = "SIMULATED"
    # Mined, but wallet A received less than amountOutMin (migration 0004): its fill row holds
    # what arrived; the token is quarantined.
    SHORT_FILLED = "SHORT_FILLED"


# Orders a restarted cycle must reconcile before trading again.
PENDING_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.SUBMITTED})


class TxPurpose(StrEnum):
    SWAP = "swap"
    APPROVE = "approve"
    SWEEP = "sweep"
    CANCEL = "cancel"


class TxStatus(StrEnum):
    SIGNED = "SIGNED"  # written to the ledger; maybe not broadcast yet
    SENT = "SENT"  # a node accepted it
    MINED = "MINED"  # receipt status 1
    REVERTED = "REVERTED"  # receipt status 0 (the nonce is consumed all the same)
    DROPPED = "DROPPED"  # its nonce was consumed by another transaction


# Transactions whose fate is not known yet: a restarted executor reconciles these by hash and
# nonce before it signs anything new.
UNRESOLVED_TX_STATUSES = frozenset({TxStatus.SIGNED, TxStatus.SENT})
# A receipt exists: the nonce is used up, by this transaction.
NONCE_CONSUMING_TX_STATUSES = frozenset({TxStatus.MINED, TxStatus.REVERTED})


class TradeMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class ErrorKind(StrEnum):
    NETWORK = "network"
    API = "api"
    SYSTEM = "system"
    CONFIG = "config"


def _enum_type(enum: type[StrEnum], name: str) -> sa.Enum:
    # Non-native (VARCHAR + CHECK) so adding a member is a plain migration on PostgreSQL too,
    # not an ALTER TYPE that cannot run inside a transaction.
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _amount() -> Any:
    return Field(sa_column=sa.Column(RawAmount(), nullable=False))


def _time(*, index: bool = False) -> Any:
    return Field(
        default_factory=utc_now, sa_column=sa.Column(UtcDateTime(), nullable=False, index=index)
    )


def _json() -> Any:
    return Field(default_factory=dict, sa_column=sa.Column(JsonDocument, nullable=False))


class OrderRow(SQLModel, table=True):
    """One swap the bot decided to make; written before its transaction is sent."""

    __tablename__ = "orders"
    __table_args__ = (sa.Index("ix_orders_wallet_status", "wallet", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(max_length=NAME_LEN, unique=True)
    created_at: datetime = _time(index=True)
    updated_at: datetime = _time()
    env: str = Field(max_length=ENV_LEN)
    wallet: str = Field(max_length=ADDRESS_LEN)
    venue: str = Field(max_length=NAME_LEN)
    token_in: str = Field(max_length=ADDRESS_LEN)
    token_out: str = Field(max_length=ADDRESS_LEN)
    amount_in: int = _amount()
    min_amount_out: int = _amount()
    expected_amount_out: int = _amount()
    status: OrderStatus = Field(
        default=OrderStatus.NEW,
        sa_column=sa.Column(_enum_type(OrderStatus, "order_status"), nullable=False, index=True),
    )
    mode: TradeMode = Field(
        sa_column=sa.Column(_enum_type(TradeMode, "trade_mode"), nullable=False)
    )
    tx_hash: str | None = Field(default=None, max_length=TX_HASH_LEN, index=True)
    nonce: int | None = Field(default=None, sa_type=sa.BigInteger)
    error: str | None = Field(default=None, sa_type=sa.Text)
    # Added by migration 0002; null for orders recorded before it.
    strategy: str | None = Field(default=None, max_length=NAME_LEN)
    group_id: str | None = Field(default=None, max_length=NAME_LEN, index=True)


class TransactionRow(SQLModel, table=True):
    """One signed transaction, written before it is broadcast.

    ``raw_tx`` is the exact signed transaction, so a crashed executor can re-broadcast the
    identical transaction (idempotent: same hash) instead of signing a new one. A fee bump is a
    new row with the same wallet and nonce, a new hash and ``replaces_tx_hash`` pointing at the
    row it replaces; once one of them has a receipt the others become DROPPED.
    ``order_id`` is null for transactions that serve no order (a profit sweep, a cancel).
    """

    __tablename__ = "transactions"
    __table_args__ = (
        sa.Index("ix_transactions_wallet_nonce", "wallet", "nonce"),
        sa.Index("ix_transactions_wallet_status", "wallet", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    updated_at: datetime = _time()
    env: str = Field(max_length=ENV_LEN)
    wallet: str = Field(max_length=ADDRESS_LEN)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    purpose: TxPurpose = Field(
        sa_column=sa.Column(_enum_type(TxPurpose, "tx_purpose"), nullable=False)
    )
    tx_hash: str = Field(max_length=TX_HASH_LEN, unique=True)
    nonce: int = Field(sa_type=sa.BigInteger)
    raw_tx: str = Field(sa_type=sa.Text)
    max_fee_per_gas: int = _amount()
    max_priority_fee_per_gas: int = _amount()
    gas_limit: int = Field(sa_type=sa.BigInteger)
    deadline: int | None = Field(default=None, sa_type=sa.BigInteger)
    status: TxStatus = Field(
        default=TxStatus.SIGNED,
        sa_column=sa.Column(_enum_type(TxStatus, "tx_status"), nullable=False),
    )
    block_number: int | None = Field(default=None, sa_type=sa.BigInteger)
    gas_used: int | None = Field(default=None, sa_type=sa.BigInteger)
    effective_gas_price: int | None = Field(
        default=None, sa_column=sa.Column(RawAmount(), nullable=True)
    )
    replaces_tx_hash: str | None = Field(default=None, max_length=TX_HASH_LEN)
    error: str | None = Field(default=None, sa_type=sa.Text)


class FillRow(SQLModel, table=True):
    """What a mined swap (or, in paper mode, the simulation) actually did.

    ``tx_hash`` is unique: one transaction fills at most one order. Chain fields are null only
    for paper fills.
    """

    __tablename__ = "fills"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    tx_hash: str | None = Field(default=None, max_length=TX_HASH_LEN, unique=True)
    nonce: int | None = Field(default=None, sa_type=sa.BigInteger)
    block_number: int | None = Field(default=None, sa_type=sa.BigInteger)
    gas_used: int | None = Field(default=None, sa_type=sa.BigInteger)
    effective_gas_price: int | None = Field(
        default=None, sa_column=sa.Column(RawAmount(), nullable=True)
    )
    token_in: str = Field(max_length=ADDRESS_LEN)
    token_out: str = Field(max_length=ADDRESS_LEN)
    amount_in: int = _amount()
    amount_out: int = _amount()
    filled_at: datetime = _time(index=True)


class BalanceSnapshotRow(SQLModel, table=True):
    __tablename__ = "balance_snapshots"
    __table_args__ = (
        sa.Index("ix_balance_snapshots_wallet_token_taken_at", "wallet", "token", "taken_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    taken_at: datetime = _time(index=True)
    block_number: int = Field(sa_type=sa.BigInteger)
    wallet: str = Field(max_length=ADDRESS_LEN)
    token: str = Field(max_length=ADDRESS_LEN)
    amount: int = _amount()


class SignalRow(SQLModel, table=True):
    """One analyzer output, with the time range of the market data it was computed from."""

    __tablename__ = "signals"
    __table_args__ = (sa.Index("ix_signals_pair_created_at", "pair", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    model: str = Field(max_length=NAME_LEN)
    pair: str = Field(max_length=NAME_LEN)
    side: str = Field(max_length=16)
    edge_bps: float
    confidence: float
    horizon_s: int
    inputs_from: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False))
    inputs_to: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False))
    payload: dict[str, Any] = _json()


class RiskDecisionRow(SQLModel, table=True):
    """Every risk verdict, approvals included, so rejections can be counted and explained.

    ``client_order_id`` is not a foreign key: an intent can be rejected before (or instead of)
    becoming an order row.
    """

    __tablename__ = "risk_decisions"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    client_order_id: str = Field(max_length=NAME_LEN, index=True)
    approved: bool
    rule: str = Field(max_length=NAME_LEN)
    reason: str = Field(sa_type=sa.Text)
    details: dict[str, Any] = _json()


class StateTransitionRow(SQLModel, table=True):
    """The bot state machine's history; the latest row per env is the current state."""

    __tablename__ = "state_transitions"
    __table_args__ = (sa.Index("ix_state_transitions_env_id", "env", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    env: str = Field(max_length=ENV_LEN)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    reason: str = Field(sa_type=sa.Text)
    actor: str = Field(max_length=NAME_LEN)


class ErrorRow(SQLModel, table=True):
    __tablename__ = "errors"
    __table_args__ = (sa.Index("ix_errors_kind_created_at", "kind", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    env: str = Field(max_length=ENV_LEN)
    kind: ErrorKind = Field(
        sa_column=sa.Column(_enum_type(ErrorKind, "error_kind"), nullable=False)
    )
    source: str = Field(max_length=128)
    message: str = Field(sa_type=sa.Text)
    details: dict[str, Any] = _json()


class ProfitSweepRow(SQLModel, table=True):
    """A transfer of profit from the hot wallet to the cold wallet (an address only)."""

    __tablename__ = "profit_sweeps"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    token: str = Field(max_length=ADDRESS_LEN)
    amount: int = _amount()
    tx_hash: str | None = Field(default=None, max_length=TX_HASH_LEN, unique=True)
    to_address: str = Field(max_length=ADDRESS_LEN)


class SwapEventRow(SQLModel, table=True):
    """One ``Swap`` log of a configured pool, as the chain reported it (migration 0003).

    V2 and V3 share one shape: V2's ``amount0In/amount1In/amount0Out/amount1Out`` are stored
    as logged; V3's signed ``amount0/amount1`` are split into ``*_in`` (positive: the pool
    received) and ``*_out`` (negative: the pool paid), so every amount is a non-negative raw
    uint256. ``sqrt_price_x96``, ``liquidity`` and ``tick`` (the pool after the swap) are set
    for V3 only. ``(tx_hash, log_index)`` is unique: re-reading a block range never duplicates
    an event. ``block_hash`` lets the ingestor notice and drop events of a reorganised block.
    """

    __tablename__ = "swap_events"
    __table_args__ = (
        sa.UniqueConstraint("tx_hash", "log_index"),
        sa.Index("ix_swap_events_pool_block_number", "pool", "block_number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pool: str = Field(max_length=ADDRESS_LEN)
    block_number: int = Field(sa_type=sa.BigInteger, index=True)
    block_hash: str = Field(max_length=TX_HASH_LEN)
    block_time: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False, index=True))
    tx_hash: str = Field(max_length=TX_HASH_LEN)
    log_index: int
    sender: str = Field(max_length=ADDRESS_LEN)
    recipient: str = Field(max_length=ADDRESS_LEN)
    amount0_in: int = _amount()
    amount1_in: int = _amount()
    amount0_out: int = _amount()
    amount1_out: int = _amount()
    sqrt_price_x96: int | None = Field(
        default=None, sa_column=sa.Column(RawAmount(), nullable=True)
    )
    liquidity: int | None = Field(default=None, sa_column=sa.Column(RawAmount(), nullable=True))
    tick: int | None = Field(default=None)


class IngestCursorRow(SQLModel, table=True):
    """How far a log stream (e.g. ``swaps``) has been read for one pool (migration 0003).

    The ingestor resumes from ``last_block`` less its re-read window, so a restart neither
    misses nor duplicates events, and a pool added later is read from its own start.
    """

    __tablename__ = "ingest_cursors"
    __table_args__ = (sa.UniqueConstraint("stream", "pool"),)

    id: int | None = Field(default=None, primary_key=True)
    stream: str = Field(max_length=NAME_LEN)
    pool: str = Field(max_length=ADDRESS_LEN)
    last_block: int = Field(sa_type=sa.BigInteger)
    updated_at: datetime = _time()


class TokenVerdictRow(SQLModel, table=True):
    """What the token-safety simulation found for one token on one pool (migration 0004).

    ``safe`` is the verdict; ``reason`` names what was found and its numbers. Taxes are in
    basis points measured against the exact pool maths (``None``: not measured, e.g. the buy
    reverted). ``block_number`` is the state the simulation ran on; a verdict is trusted until
    ``expires_at``, after which the token is simulated again.
    """

    __tablename__ = "token_verdicts"
    __table_args__ = (
        sa.Index("ix_token_verdicts_env_token_created_at", "env", "token", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time()
    expires_at: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False))
    env: str = Field(max_length=ENV_LEN)
    token: str = Field(max_length=ADDRESS_LEN)
    symbol: str = Field(max_length=NAME_LEN)
    pool: str = Field(max_length=ADDRESS_LEN)
    block_number: int = Field(sa_type=sa.BigInteger)
    safe: bool
    reason: str = Field(sa_type=sa.Text)
    buy_tax_bps: float | None = None
    transfer_tax_bps: float | None = None
    sell_tax_bps: float | None = None
    details: dict[str, Any] = _json()


class TokenQuarantineRow(SQLModel, table=True):
    """A token the bot must not buy until an operator clears it (migration 0004).

    Set by the bot itself (a fill short of ``amountOutMin``, a token whose reads fail) with
    ``actor`` naming the part that set it; cleared only by an operator, whose name and reason
    are kept beside it. The active quarantine of a token is its row with ``cleared_at`` unset.
    """

    __tablename__ = "token_quarantines"
    __table_args__ = (sa.Index("ix_token_quarantines_env_token", "env", "token"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time(index=True)
    env: str = Field(max_length=ENV_LEN)
    token: str = Field(max_length=ADDRESS_LEN)
    symbol: str = Field(max_length=NAME_LEN)
    source: str = Field(max_length=NAME_LEN)
    reason: str = Field(sa_type=sa.Text)
    actor: str = Field(max_length=NAME_LEN)
    details: dict[str, Any] = _json()
    cleared_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    cleared_by: str | None = Field(default=None, max_length=NAME_LEN)
    clear_reason: str | None = Field(default=None, sa_type=sa.Text)


class ChainInstanceRow(SQLModel, table=True):
    """Which chain this ledger belongs to, and who said so (migration 0005).

    A dev chain restarted from its cached state has the same chain id and the same early
    blocks as the last one but none of its transactions, so ``instance`` is the random id that
    ``start_market`` writes into the manifest at each start. The newest row of an env names
    the chain its ledger follows; ``dexpilot ledger archive`` and ``dexpilot devnet up`` write
    one with the actor and the reason when they start a fresh ledger.
    """

    __tablename__ = "chain_instances"
    __table_args__ = (sa.Index("ix_chain_instances_env_created_at", "env", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _time()
    env: str = Field(max_length=ENV_LEN)
    chain_id: int = Field(sa_type=sa.BigInteger)
    instance: str | None = Field(default=None, max_length=NAME_LEN)
    block_hash: str | None = Field(default=None, max_length=TX_HASH_LEN)
    actor: str = Field(max_length=NAME_LEN)
    reason: str = Field(sa_type=sa.Text)


LEDGER_TABLES: tuple[type[SQLModel], ...] = (
    OrderRow,
    TransactionRow,
    FillRow,
    BalanceSnapshotRow,
    SignalRow,
    RiskDecisionRow,
    StateTransitionRow,
    ErrorRow,
    ProfitSweepRow,
    SwapEventRow,
    IngestCursorRow,
    TokenVerdictRow,
    TokenQuarantineRow,
    ChainInstanceRow,
)
