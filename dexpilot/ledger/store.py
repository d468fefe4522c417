"""The ``Ledger``: one database (SQLite file or PostgreSQL), its migrations, and thin helpers.

The helpers check their arguments before touching the database, so bad input raises a
``TypeError``/``ValueError`` naming the field and nothing is written. Database failures
(unreachable server, locked file, lost connection) become ``SystemFault``: per the error
taxonomy a ledger that cannot be written stops trading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col, select

from dexpilot.errors import (
    ApiError,
    ConfigError,
    NetworkError,
    SystemFault,
)
from dexpilot.ledger import checks
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
from dexpilot.ledger.types import check_raw_amount, utc_now

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Which status may follow which. FILLED and SIMULATED are reached only through ``add_fill`` so
# that a filled order always has its fill row. SUBMITTED -> SUBMITTED is a replacement
# transaction (same nonce, new hash, e.g. a gas bump).
ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FAILED}
    ),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.SIMULATED: frozenset(),
}


class DuplicateOrder(SystemFault):
    """An order with this client order id is already recorded: doing it again could trade twice."""


class UnknownOrder(SystemFault):
    """No order with this client order id: the caller and the ledger disagree."""


class IllegalOrderTransition(SystemFault):
    """The requested status change (or fill) does not follow from the order's current state."""


class Ledger:
    """The trading ledger on one database URL.

    ``sqlite:///path/to/ledger.db`` (the parent directory is created) or
    ``postgresql://user@host/db`` (driven by psycopg 3). Creating a ``Ledger`` does not
    connect; the first query does, and a database that cannot be reached raises
    ``SystemFault``.
    """

    def __init__(
        self, url: str, *, busy_timeout_s: float = 10.0, connect_timeout_s: float = 5.0
    ) -> None:
        if busy_timeout_s <= 0 or connect_timeout_s <= 0:
            raise ConfigError("ledger: busy_timeout_s and connect_timeout_s must be > 0")
        self._url = parse_ledger_url(url)
        self.url = self._url.render_as_string(hide_password=True)
        self.engine = _create_engine(self._url, busy_timeout_s, connect_timeout_s)
        # On SQLite, writers take the write lock when they begin (BEGIN IMMEDIATE): a deferred
        # transaction that reads and then writes fails at once with "database is locked" if
        # another writer committed in between, without waiting for busy_timeout.
        self._write_engine = self.engine.execution_options(dexpilot_sqlite_begin="IMMEDIATE")

    @property
    def backend(self) -> str:
        return self._url.get_backend_name()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- sessions and migrations ---------------------------------------------------------

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error.

        Rows stay readable after the block (``expire_on_commit=False``).
        """
        engine = self._write_engine if write else self.engine
        with self._faults_mapped(), Session(engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the database to ``revision`` (default: the newest) in one transaction."""
        config = alembic_config()
        with self._faults_mapped(), self._write_engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def current_revision(self) -> str | None:
        with self._faults_mapped(), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def is_at_head(self) -> bool:
        return self.current_revision() == head_revision()

    @contextmanager
    def _faults_mapped(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise SystemFault(
                f"ledger database {self.url} is unreachable or failing: {_first_line(exc.orig)}"
            ) from exc
        except StatementError as exc:
            # A value refused by a column type (RawAmount, UtcDateTime) reaches us wrapped;
            # hand the caller the TypeError/ValueError that names the problem.
            if not isinstance(exc, DBAPIError) and isinstance(exc.orig, TypeError | ValueError):
                raise exc.orig from exc
            raise

    # -- orders and fills --------------------------------------------------------------

    def record_order(
        self,
        *,
        client_order_id: str,
        env: str,
        wallet: str,
        venue: str,
        token_in: str,
        token_out: str,
        amount_in: int,
        min_amount_out: int,
        expected_amount_out: int,
        mode: TradeMode | str,
        created_at: datetime | None = None,
    ) -> OrderRow:
        """Write a NEW order. Call it before the transaction is sent."""
        now = checks.aware(created_at, "created_at") if created_at is not None else utc_now()
        row = OrderRow(
            client_order_id=checks.name(client_order_id, "client_order_id"),
            created_at=now,
            updated_at=now,
            env=checks.env(env),
            wallet=checks.address(wallet, "wallet"),
            venue=checks.name(venue, "venue"),
            token_in=checks.address(token_in, "token_in"),
            token_out=checks.address(token_out, "token_out"),
            amount_in=checks.positive_amount(amount_in, "amount_in"),
            # "Every swap is bounded": an order without a minimum output is a bug upstream.
            min_amount_out=checks.positive_amount(min_amount_out, "min_amount_out"),
            expected_amount_out=check_raw_amount(expected_amount_out, what="expected_amount_out"),
            status=OrderStatus.NEW,
            mode=checks.member(TradeMode, mode, "mode"),
        )
        if row.token_in == row.token_out:
            raise ValueError(f"token_in and token_out are the same token {row.token_in}")
        try:
            with self.session() as session:
                session.add(row)
        except IntegrityError as exc:
            if self.get_order(row.client_order_id) is not None:
                raise DuplicateOrder(
                    f"order {row.client_order_id!r} is already in the ledger"
                ) from exc
            raise
        return row

    def update_order_status(
        self,
        client_order_id: str,
        status: OrderStatus | str,
        *,
        tx_hash: str | None = None,
        nonce: int | None = None,
        error: str | None = None,
    ) -> OrderRow:
        """Move an order to SUBMITTED (needs tx_hash and nonce), FAILED, REJECTED or CANCELLED.

        FAILED and REJECTED need an ``error`` saying why. FILLED/SIMULATED come from
        ``add_fill``.
        """
        target = checks.member(OrderStatus, status, "status")
        new_hash = checks.tx_hash(tx_hash) if tx_hash is not None else None
        if nonce is not None:
            checks.chain_int(nonce, "nonce")
        if target in (OrderStatus.FAILED, OrderStatus.REJECTED) and not (error and error.strip()):
            raise ValueError(f"moving an order to {target} needs an error text saying why")
        with self.session() as session:
            order = _locked_order(session, client_order_id)
            _check_transition(order, target)
            if target is OrderStatus.SUBMITTED:
                if new_hash is None:
                    raise ValueError("a SUBMITTED order needs the tx_hash of its transaction")
                if nonce is None and order.nonce is None:
                    raise ValueError("a SUBMITTED order needs the nonce of its transaction")
                if nonce is not None and order.nonce is not None and nonce != order.nonce:
                    # A replacement must reuse the nonce; a new nonce would be a second trade.
                    raise IllegalOrderTransition(
                        f"order {order.client_order_id!r} was sent with nonce {order.nonce}; "
                        f"refusing nonce {nonce}"
                    )
            if new_hash is not None:
                order.tx_hash = new_hash
            if nonce is not None:
                order.nonce = nonce
            if error is not None:
                order.error = error
            order.status = target
            order.updated_at = utc_now()
            session.add(order)
        return order

    def add_fill(
        self,
        client_order_id: str,
        *,
        amount_in: int,
        amount_out: int,
        tx_hash: str | None = None,
        nonce: int | None = None,
        block_number: int | None = None,
        gas_used: int | None = None,
        effective_gas_price: int | None = None,
        filled_at: datetime | None = None,
    ) -> FillRow:
        """Record what the swap did and, in the same transaction, close the order.

        Live: the order must be SUBMITTED with the same tx_hash and nonce, all chain fields are
        required, and the order becomes FILLED. Paper: the order must be NEW, chain fields are
        optional, and the order becomes SIMULATED.
        """
        check_raw_amount(amount_in, what="amount_in")
        check_raw_amount(amount_out, what="amount_out")
        fill_hash = checks.tx_hash(tx_hash) if tx_hash is not None else None
        chain_ints = {"nonce": nonce, "block_number": block_number, "gas_used": gas_used}
        for what, value in chain_ints.items():
            if value is not None:
                checks.chain_int(value, what)
        if effective_gas_price is not None:
            check_raw_amount(effective_gas_price, what="effective_gas_price")
        when = checks.aware(filled_at, "filled_at") if filled_at is not None else utc_now()
        with self.session() as session:
            order = _locked_order(session, client_order_id)
            if order.mode is TradeMode.LIVE:
                target = OrderStatus.FILLED
                if order.status is not OrderStatus.SUBMITTED:
                    raise IllegalOrderTransition(
                        f"order {order.client_order_id!r} is {order.status}; only a SUBMITTED "
                        "live order can be filled"
                    )
                chain = {
                    "tx_hash": fill_hash,
                    "nonce": nonce,
                    "block_number": block_number,
                    "gas_used": gas_used,
                    "effective_gas_price": effective_gas_price,
                }
                missing = [name for name, value in chain.items() if value is None]
                if missing:
                    raise ValueError(f"a live fill needs {', '.join(missing)}")
                if fill_hash != order.tx_hash or nonce != order.nonce:
                    raise SystemFault(
                        f"fill tx {fill_hash} nonce {nonce} does not match order "
                        f"{order.client_order_id!r} (tx {order.tx_hash} nonce {order.nonce}): "
                        "record the replacement with update_order_status first"
                    )
            else:
                target = OrderStatus.SIMULATED
                if order.status is not OrderStatus.NEW:
                    raise IllegalOrderTransition(
                        f"paper order {order.client_order_id!r} is {order.status}; only a NEW "
                        "paper order can be simulated"
                    )
            assert order.id is not None
            fill = FillRow(
                order_id=order.id,
                tx_hash=fill_hash,
                nonce=nonce,
                block_number=block_number,
                gas_used=gas_used,
                effective_gas_price=effective_gas_price,
                token_in=order.token_in,
                token_out=order.token_out,
                amount_in=amount_in,
                amount_out=amount_out,
                filled_at=when,
            )
            order.status = target
            order.updated_at = utc_now()
            session.add(fill)
            session.add(order)
        return fill

    def get_order(self, client_order_id: str) -> OrderRow | None:
        with self.session(write=False) as session:
            return session.exec(
                select(OrderRow).where(OrderRow.client_order_id == client_order_id)
            ).first()

    def fills_for(self, client_order_id: str) -> list[FillRow]:
        with self.session(write=False) as session:
            statement = (
                select(FillRow)
                .join(OrderRow, col(FillRow.order_id) == col(OrderRow.id))
                .where(OrderRow.client_order_id == client_order_id)
                .order_by(col(FillRow.id))
            )
            return list(session.exec(statement).all())

    def pending_orders(self, wallet: str, *, env: str | None = None) -> list[OrderRow]:
        """Orders of ``wallet`` still NEW or SUBMITTED, oldest first: reconcile these first."""
        statement = (
            select(OrderRow)
            .where(OrderRow.wallet == checks.address(wallet, "wallet"))
            .where(col(OrderRow.status).in_(sorted(PENDING_STATUSES)))
            .order_by(col(OrderRow.id))
        )
        if env is not None:
            statement = statement.where(OrderRow.env == checks.env(env))
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    # -- decisions, state, errors, signals -----------------------------------------------

    def record_risk_decision(
        self,
        client_order_id: str,
        *,
        approved: bool,
        rule: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> RiskDecisionRow:
        if not isinstance(approved, bool):
            raise TypeError(f"approved must be a bool, got {type(approved).__name__}")
        row = RiskDecisionRow(
            client_order_id=checks.name(client_order_id, "client_order_id"),
            approved=approved,
            rule=checks.name(rule, "rule"),
            reason=checks.text_field(reason, "reason"),
            details=dict(details or {}),
        )
        with self.session() as session:
            session.add(row)
        return row

    def record_transition(
        self,
        env: str,
        from_state: str | Enum,
        to_state: str | Enum,
        *,
        reason: str,
        actor: str,
        created_at: datetime | None = None,
    ) -> StateTransitionRow:
        """Store one bot state change. Which changes are legal is ``dexpilot.state``'s rule."""
        row = StateTransitionRow(
            created_at=checks.aware(created_at, "created_at") if created_at else utc_now(),
            env=checks.env(env),
            from_state=checks.state(from_state, "from_state"),
            to_state=checks.state(to_state, "to_state"),
            reason=checks.text_field(reason, "reason"),
            actor=checks.name(actor, "actor"),
        )
        with self.session() as session:
            session.add(row)
        return row

    def latest_state(self, env: str) -> str | None:
        """The state the last stored transition of ``env`` went to; None if there is none."""
        # Insertion order, not the timestamp: clocks of different hosts can disagree.
        statement = (
            select(StateTransitionRow.to_state)
            .where(StateTransitionRow.env == checks.env(env))
            .order_by(col(StateTransitionRow.id).desc())
            .limit(1)
        )
        with self.session(write=False) as session:
            return session.exec(statement).first()

    def transitions(self, env: str) -> list[StateTransitionRow]:
        statement = (
            select(StateTransitionRow)
            .where(StateTransitionRow.env == checks.env(env))
            .order_by(col(StateTransitionRow.id))
        )
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    def record_error(
        self,
        env: str,
        kind: ErrorKind | str,
        source: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> ErrorRow:
        row = ErrorRow(
            env=checks.env(env),
            kind=checks.member(ErrorKind, kind, "kind"),
            source=checks.name(source, "source", max_len=128),
            message=checks.text_field(message, "message"),
            details=dict(details or {}),
        )
        with self.session() as session:
            session.add(row)
        return row

    def record_signals(self, signals: Iterable[SignalRow]) -> int:
        """Store a batch of signals in one transaction; all or none. Returns how many."""
        rows = list(signals)
        for index, row in enumerate(rows):
            checks.signal(row, index)
        with self.session() as session:
            session.add_all(rows)
        return len(rows)

    # -- balances and sweeps -------------------------------------------------------------

    def record_balance_snapshot(
        self,
        *,
        wallet: str,
        token: str,
        amount: int,
        block_number: int,
        taken_at: datetime | None = None,
    ) -> BalanceSnapshotRow:
        row = BalanceSnapshotRow(
            wallet=checks.address(wallet, "wallet"),
            token=checks.address(token, "token"),
            amount=check_raw_amount(amount, what="amount"),
            block_number=checks.chain_int(block_number, "block_number"),
            taken_at=checks.aware(taken_at, "taken_at") if taken_at is not None else utc_now(),
        )
        with self.session() as session:
            session.add(row)
        return row

    def record_profit_sweep(
        self, *, token: str, amount: int, to_address: str, tx_hash: str | None = None
    ) -> ProfitSweepRow:
        row = ProfitSweepRow(
            token=checks.address(token, "token"),
            amount=checks.positive_amount(amount, "amount"),
            to_address=checks.address(to_address, "to_address"),
            tx_hash=checks.tx_hash(tx_hash) if tx_hash is not None else None,
        )
        with self.session() as session:
            session.add(row)
        return row


# -- migrations ------------------------------------------------------------------------


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged migrations; ``url`` only for offline (--sql) use."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation would read a "%" in a URL-encoded password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def error_kind_for(exc: BaseException) -> ErrorKind:
    """The ``errors.kind`` to store for an exception; anything unclassified is a system error."""
    if isinstance(exc, NetworkError):
        return ErrorKind.NETWORK
    if isinstance(exc, ApiError):
        return ErrorKind.API
    if isinstance(exc, ConfigError):
        return ErrorKind.CONFIG
    return ErrorKind.SYSTEM


# -- engine ----------------------------------------------------------------------------


def parse_ledger_url(url: str) -> URL:
    """Check a ledger URL and pick the driver; a ``ConfigError`` never echoes a password."""
    usage = "expected sqlite:///path/to/ledger.db or postgresql://user@host:port/dbname"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"ledger url is empty; {usage}")
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        # Not echoed: a malformed URL may still hold a password.
        raise ConfigError(f"ledger url is not a database URL; {usage}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return parsed
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        # Plain postgresql:// means psycopg2 to SQLAlchemy; the project ships psycopg 3.
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"ledger url {parsed.render_as_string(hide_password=True)} uses an unsupported "
        f"database; {usage}"
    )


def _create_engine(url: URL, busy_timeout_s: float, connect_timeout_s: float) -> Engine:
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, math.ceil(connect_timeout_s))},
        )
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection: each new connection to :memory: would be a new empty database.
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemFault(
                f"cannot create the ledger directory {path.parent}: {exc.strerror}"
            ) from exc
        engine = create_engine(
            url,
            # The pool hands a connection to one thread at a time, so sharing is safe.
            connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        )
    _configure_sqlite(engine, busy_timeout_ms=int(busy_timeout_s * 1000), wal=not in_memory)
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite (which would BEGIN lazily, and never for
        # SELECTs) so SQLAlchemy's begin event below decides when and how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                # WAL lets the analysis flow read while a trading cycle writes.
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # synchronous stays FULL (the default): a committed order must survive power loss.
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("dexpilot_sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


# -- order helpers ---------------------------------------------------------------------


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def _locked_order(session: Session, client_order_id: str) -> OrderRow:
    # FOR UPDATE on PostgreSQL; SQLite ignores it and is already serialised by BEGIN IMMEDIATE.
    statement = (
        select(OrderRow).where(OrderRow.client_order_id == client_order_id).with_for_update()
    )
    order = session.exec(statement).first()
    if order is None:
        raise UnknownOrder(f"no order {client_order_id!r} in the ledger")
    return order


def _check_transition(order: OrderRow, target: OrderStatus) -> None:
    if target in (OrderStatus.FILLED, OrderStatus.SIMULATED):
        raise IllegalOrderTransition(
            f"order {order.client_order_id!r}: {target} is set by add_fill, with the fill"
        )
    if target not in ORDER_TRANSITIONS[order.status]:
        raise IllegalOrderTransition(
            f"order {order.client_order_id!r} is {order.status}; it cannot become {target}"
        )
