"""market data: swap events and ingest cursors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Adds ``swap_events`` (every ``Swap`` log of a configured pool: raw uint256 amounts, block
number, hash and time, unique by ``(tx_hash, log_index)``) and ``ingest_cursors`` (how far
each pool's log stream has been read). Nothing existing changes.

As in 0001 the column types are spelled out, not imported from ``dexpilot.ledger.types``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _raw_amount() -> sa.types.TypeEngine[Any]:
    # uint256 without loss: exact NUMERIC on PostgreSQL, zero-padded decimal text on SQLite.
    return sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "swap_events",
        _id(),
        sa.Column("pool", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("block_time", _time(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("recipient", sa.String(42), nullable=False),
        sa.Column("amount0_in", _raw_amount(), nullable=False),
        sa.Column("amount1_in", _raw_amount(), nullable=False),
        sa.Column("amount0_out", _raw_amount(), nullable=False),
        sa.Column("amount1_out", _raw_amount(), nullable=False),
        sa.Column("sqrt_price_x96", _raw_amount(), nullable=True),
        sa.Column("liquidity", _raw_amount(), nullable=True),
        sa.Column("tick", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_swap_events")),
        sa.UniqueConstraint("tx_hash", "log_index", name=op.f("uq_swap_events_tx_hash")),
    )
    op.create_index(op.f("ix_swap_events_block_number"), "swap_events", ["block_number"])
    op.create_index(op.f("ix_swap_events_block_time"), "swap_events", ["block_time"])
    op.create_index("ix_swap_events_pool_block_number", "swap_events", ["pool", "block_number"])

    op.create_table(
        "ingest_cursors",
        _id(),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(42), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_cursors")),
        sa.UniqueConstraint("stream", "pool", name=op.f("uq_ingest_cursors_stream")),
    )


def downgrade() -> None:
    # Indexes go with their tables.
    op.drop_table("ingest_cursors")
    op.drop_table("swap_events")
