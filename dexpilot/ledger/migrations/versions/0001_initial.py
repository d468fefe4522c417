"""initial ledger tables

Revision ID: 0001
Revises:
Create Date: 2026-11-26

The column types are spelled out here rather than imported from ``dexpilot.ledger.types`` so
this migration keeps creating the same schema however those classes change later; they must
match what ``RawAmount`` and ``UtcDateTime`` compile to (the drift test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _raw_amount() -> sa.types.TypeEngine[Any]:
    # uint256 without loss: exact NUMERIC on PostgreSQL, zero-padded decimal text on SQLite.
    return sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "orders",
        _id(),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("token_in", sa.String(42), nullable=False),
        sa.Column("token_out", sa.String(42), nullable=False),
        sa.Column("amount_in", _raw_amount(), nullable=False),
        sa.Column("min_amount_out", _raw_amount(), nullable=False),
        sa.Column("expected_amount_out", _raw_amount(), nullable=False),
        sa.Column(
            "status",
            _enum(
                "order_status",
                "NEW", "SUBMITTED", "FILLED", "FAILED", "REJECTED", "CANCELLED", "SIMULATED",
            ),
            nullable=False,
        ),
        sa.Column("mode", _enum("trade_mode", "paper", "live"), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_orders_client_order_id")),
    )
    op.create_index(op.f("ix_orders_created_at"), "orders", ["created_at"])
    op.create_index(op.f("ix_orders_status"), "orders", ["status"])
    op.create_index(op.f("ix_orders_tx_hash"), "orders", ["tx_hash"])
    op.create_index("ix_orders_wallet_status", "orders", ["wallet", "status"])

    op.create_table(
        "fills",
        _id(),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price", _raw_amount(), nullable=True),
        sa.Column("token_in", sa.String(42), nullable=False),
        sa.Column("token_out", sa.String(42), nullable=False),
        sa.Column("amount_in", _raw_amount(), nullable=False),
        sa.Column("amount_out", _raw_amount(), nullable=False),
        sa.Column("filled_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_fills_tx_hash")),
    )
    op.create_index(op.f("ix_fills_filled_at"), "fills", ["filled_at"])
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"])

    op.create_table(
        "balance_snapshots",
        _id(),
        sa.Column("taken_at", _time(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("amount", _raw_amount(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_snapshots")),
    )
    op.create_index(op.f("ix_balance_snapshots_taken_at"), "balance_snapshots", ["taken_at"])
    op.create_index(
        "ix_balance_snapshots_wallet_token_taken_at",
        "balance_snapshots",
        ["wallet", "token", "taken_at"],
    )

    op.create_table(
        "signals",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("pair", sa.String(64), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("edge_bps", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("horizon_s", sa.Integer(), nullable=False),
        sa.Column("inputs_from", _time(), nullable=False),
        sa.Column("inputs_to", _time(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index(op.f("ix_signals_created_at"), "signals", ["created_at"])
    op.create_index("ix_signals_pair_created_at", "signals", ["pair", "created_at"])

    op.create_table(
        "risk_decisions",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_decisions")),
    )
    op.create_index(op.f("ix_risk_decisions_created_at"), "risk_decisions", ["created_at"])
    op.create_index(
        op.f("ix_risk_decisions_client_order_id"), "risk_decisions", ["client_order_id"]
    )

    op.create_table(
        "state_transitions",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_transitions")),
    )
    op.create_index(op.f("ix_state_transitions_created_at"), "state_transitions", ["created_at"])
    op.create_index("ix_state_transitions_env_id", "state_transitions", ["env", "id"])

    op.create_table(
        "errors",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column(
            "kind", _enum("error_kind", "network", "api", "system", "config"), nullable=False
        ),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_errors")),
    )
    op.create_index(op.f("ix_errors_created_at"), "errors", ["created_at"])
    op.create_index("ix_errors_kind_created_at", "errors", ["kind", "created_at"])

    op.create_table(
        "profit_sweeps",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("amount", _raw_amount(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profit_sweeps")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_profit_sweeps_tx_hash")),
    )
    op.create_index(op.f("ix_profit_sweeps_created_at"), "profit_sweeps", ["created_at"])


def downgrade() -> None:
    # Children before parents (fills references orders); indexes go with their tables.
    for table in (
        "fills",
        "orders",
        "balance_snapshots",
        "signals",
        "risk_decisions",
        "state_transitions",
        "errors",
        "profit_sweeps",
    ):
        op.drop_table(table)
