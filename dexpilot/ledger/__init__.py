"""The trading ledger: SQLModel tables, lossless money columns, migrations, and ``Ledger``.

SQLite (WAL) by default, PostgreSQL by URL; the schema is created and evolved only by the
Alembic migrations packaged in ``dexpilot/ledger/migrations``.
"""

from dexpilot.ledger.models import (
    PENDING_STATUSES,
    BalanceSnapshotRow,
    ErrorKind,
    ErrorRow,
    FillRow,
    OrderRow,
    OrderStatus,
    ProfitSweepRow,
    RiskDecisionRow,
    SignalRow,
    StateTransitionRow,
    TradeMode,
)
from dexpilot.ledger.store import (
    MIGRATIONS_DIR,
    ORDER_TRANSITIONS,
    DuplicateOrder,
    IllegalOrderTransition,
    Ledger,
    UnknownOrder,
    alembic_config,
    error_kind_for,
    head_revision,
)
from dexpilot.ledger.types import RawAmount, UtcDateTime, check_raw_amount

__all__ = [
    "MIGRATIONS_DIR",
    "ORDER_TRANSITIONS",
    "PENDING_STATUSES",
    "BalanceSnapshotRow",
    "DuplicateOrder",
    "ErrorKind",
    "ErrorRow",
    "FillRow",
    "IllegalOrderTransition",
    "Ledger",
    "OrderRow",
    "OrderStatus",
    "ProfitSweepRow",
    "RawAmount",
    "RiskDecisionRow",
    "SignalRow",
    "StateTransitionRow",
    "TradeMode",
    "UnknownOrder",
    "UtcDateTime",
    "alembic_config",
    "check_raw_amount",
    "error_kind_for",
    "head_revision",
]
