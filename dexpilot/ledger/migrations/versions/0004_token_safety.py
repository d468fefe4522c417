"""token safety: verdicts of the token-safety simulation and token quarantines

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Adds ``token_verdicts`` (what simulating a buy, a transfer and a sell of a token found, at
which block, until when it is trusted) and ``token_quarantines`` (tokens the bot must not buy
until an operator clears them, with who set and who cleared it and why). Nothing existing
changes, except that ``orders.status`` may also be ``SHORT_FILLED``: a swap that was mined
but delivered less than its ``amountOutMin`` (a fee-on-transfer token, say) is its own
outcome, not a fill like any other.

As in 0001 the column types are spelled out, not imported from ``dexpilot.ledger.types``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


ORDER_STATUSES = ("NEW", "SUBMITTED", "FILLED", "FAILED", "REJECTED", "CANCELLED", "SIMULATED")


def _order_status_check(statuses: Sequence[str]) -> None:
    allowed = ", ".join(f"'{s}'" for s in statuses)
    # Batch mode: SQLite cannot alter a CHECK constraint in place, so the table is rebuilt.
    # The rebuild drops the old table, which fills and transactions reference:
    # ``Ledger.upgrade`` runs SQLite migrations with foreign keys off and checks them after.
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_order_status"), type_="check")
        batch.create_check_constraint("order_status", sa.text(f"status IN ({allowed})"))


def upgrade() -> None:
    _order_status_check((*ORDER_STATUSES, "SHORT_FILLED"))
    op.create_table(
        "token_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("safe", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("buy_tax_bps", sa.Float(), nullable=True),
        sa.Column("transfer_tax_bps", sa.Float(), nullable=True),
        sa.Column("sell_tax_bps", sa.Float(), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_verdicts")),
    )
    op.create_index("ix_token_verdicts_env_token_created_at", "token_verdicts",
                    ["env", "token", "created_at"])
    op.create_table(
        "token_quarantines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("cleared_at", _time(), nullable=True),
        sa.Column("cleared_by", sa.String(64), nullable=True),
        sa.Column("clear_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_quarantines")),
    )
    op.create_index(op.f("ix_token_quarantines_created_at"), "token_quarantines",
                    ["created_at"])
    op.create_index("ix_token_quarantines_env_token", "token_quarantines", ["env", "token"])


def downgrade() -> None:
    _order_status_check(ORDER_STATUSES)
    op.drop_table("token_quarantines")
    op.drop_table("token_verdicts")
