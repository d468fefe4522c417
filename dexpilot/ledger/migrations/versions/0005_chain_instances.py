"""chain instances: which chain a ledger belongs to

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A dev chain restarted from its cached state has the same chain id and early blocks as the
previous one but none of its transactions; a ledger kept across such a restart holds nonces and
hashes the new chain never saw. ``chain_instances`` records, per env, the chain instance the
ledger follows (the start id from the dev chain manifest, a block hash) and who recorded it
and why, so a new instance starts a new ledger instead of a crash. Nothing existing changes.

As in 0001 the column types are spelled out, not imported from ``dexpilot.ledger.types``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chain_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("instance", sa.String(64), nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_instances")),
    )
    op.create_index("ix_chain_instances_env_created_at", "chain_instances",
                    ["env", "created_at"])


def downgrade() -> None:
    op.drop_table("chain_instances")
