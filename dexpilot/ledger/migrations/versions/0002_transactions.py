"""signed transactions; order strategy and group

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Adds ``transactions`` (every signed transaction, written before it is broadcast, so a crash
can be reconciled by hash and nonce) and the nullable ``orders.strategy`` / ``orders.group_id``
(the legs of one arbitrage share a group). Existing orders keep their rows, with both new
columns null.

As in 0001 the column types are spelled out, not imported from ``dexpilot.ledger.types``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _raw_amount() -> sa.types.TypeEngine[Any]:
    # uint256 without loss: exact NUMERIC on PostgreSQL, zero-padded decimal text on SQLite.
    return sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    # Adding nullable columns and an index is a plain ALTER on both backends; batch mode keeps
    # SQLite from needing anything more (it only rebuilds a table when it has to).
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("strategy", sa.String(64), nullable=True))
        batch.add_column(sa.Column("group_id", sa.String(64), nullable=True))
        batch.create_index(batch.f("ix_orders_group_id"), ["group_id"])

    op.create_table(
        "transactions",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column(
            "purpose", _enum("tx_purpose", "swap", "approve", "sweep", "cancel"), nullable=False
        ),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("raw_tx", sa.Text(), nullable=False),
        sa.Column("max_fee_per_gas", _raw_amount(), nullable=False),
        sa.Column("max_priority_fee_per_gas", _raw_amount(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=True),
        sa.Column(
            "status",
            _enum("tx_status", "SIGNED", "SENT", "MINED", "REVERTED", "DROPPED"),
            nullable=False,
        ),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price", _raw_amount(), nullable=True),
        sa.Column("replaces_tx_hash", sa.String(66), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_transactions_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_transactions_tx_hash")),
    )
    op.create_index(op.f("ix_transactions_created_at"), "transactions", ["created_at"])
    op.create_index(op.f("ix_transactions_order_id"), "transactions", ["order_id"])
    op.create_index("ix_transactions_wallet_nonce", "transactions", ["wallet", "nonce"])
    op.create_index("ix_transactions_wallet_status", "transactions", ["wallet", "status"])


def downgrade() -> None:
    # The table first: it references orders. Its indexes go with it.
    op.drop_table("transactions")
    # Never rebuild orders on SQLite: the rebuild drops the old table, and with foreign keys on
    # that fails as soon as a fill references an order. SQLite >= 3.35 drops a plain column in
    # place, which is all this needs (the index goes first).
    with op.batch_alter_table("orders", recreate="never") as batch:
        batch.drop_index(batch.f("ix_orders_group_id"))
        batch.drop_column("group_id")
        batch.drop_column("strategy")
