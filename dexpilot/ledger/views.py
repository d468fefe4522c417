"""Read-only views of the ledger for operators, metrics and the cycle.

The ledger is the only door to the database: code outside ``dexpilot/ledger`` asks these
functions (or ``Ledger``'s methods) and never writes a query of its own, so a table's shape
and its indexes are known in one place. Each view is one query in one read transaction.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlmodel import col, func, select

from dexpilot.ledger.models import ErrorRow, OrderRow, SignalRow, StateTransitionRow
from dexpilot.ledger.store import Ledger


def error_counts(ledger: Ledger, env: str | None = None, *, since: datetime | None = None
                 ) -> dict[str, dict[str, int]]:
    """Errors by kind and source: ``{kind: {source: count}}`` (optionally since a time)."""
    statement = select(ErrorRow.kind, ErrorRow.source, func.count()).group_by(
        ErrorRow.kind, ErrorRow.source)
    if env is not None:
        statement = statement.where(ErrorRow.env == env)
    if since is not None:
        statement = statement.where(ErrorRow.created_at >= since)
    out: dict[str, dict[str, int]] = {}
    with ledger.session(write=False) as session:
        for kind, source, count in session.exec(statement).all():
            out.setdefault(str(getattr(kind, "value", kind)), {})[source] = int(count)
    return out


def error_timeline(ledger: Ledger, env: str | None = None, *, bucket_s: int = 3600,
                   since: datetime | None = None) -> list[tuple[datetime, str, int]]:
    """The ``errors`` view: ``(bucket start (UTC), kind, count)`` rows, oldest first."""
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    statement = select(ErrorRow.created_at, ErrorRow.kind)
    if env is not None:
        statement = statement.where(ErrorRow.env == env)
    if since is not None:
        statement = statement.where(ErrorRow.created_at >= since)
    buckets: Counter[tuple[datetime, str]] = Counter()
    with ledger.session(write=False) as session:
        for created_at, kind in session.exec(statement).all():
            at = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
            start = int(at.timestamp()) // bucket_s * bucket_s
            buckets[(datetime.fromtimestamp(start, UTC), str(getattr(kind, "value", kind)))] += 1
    return [(at, kind, count) for (at, kind), count in sorted(buckets.items())]


def errors(ledger: Ledger, env: str | None = None) -> list[ErrorRow]:
    """Every error row (of ``env``), oldest first."""
    statement = select(ErrorRow).order_by(col(ErrorRow.id))
    if env is not None:
        statement = statement.where(ErrorRow.env == env)
    with ledger.session(write=False) as session:
        return list(session.exec(statement).all())


def orders(ledger: Ledger, env: str | None = None) -> list[OrderRow]:
    """Every order (of ``env``), oldest first."""
    statement = select(OrderRow).order_by(col(OrderRow.id))
    if env is not None:
        statement = statement.where(OrderRow.env == env)
    with ledger.session(write=False) as session:
        return list(session.exec(statement).all())


def recent_transitions(ledger: Ledger, env: str, limit: int = 10) -> list[StateTransitionRow]:
    """The last ``limit`` state transitions of ``env``, oldest first."""
    statement = (select(StateTransitionRow).where(StateTransitionRow.env == env)
                 .order_by(col(StateTransitionRow.id).desc()).limit(limit))
    with ledger.session(write=False) as session:
        rows = list(session.exec(statement).all())
    return rows[::-1]


def signals_since(ledger: Ledger, since: datetime, *, except_model: str | None = None
                  ) -> list[SignalRow]:
    """Signals stored at or after ``since`` (leaving out ``except_model``'s), oldest first."""
    statement = select(SignalRow).where(SignalRow.created_at >= since)
    if except_model is not None:
        statement = statement.where(SignalRow.model != except_model)
    with ledger.session(write=False) as session:
        return list(session.exec(statement.order_by(col(SignalRow.id))).all())
