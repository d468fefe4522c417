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
from sqlalchemy import Engine, create_engine, event, func, text
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
from sqlmodel.sql.expression import SelectOfScalar

from dexpilot.errors import (
    ApiError,
    ConfigError,
    NetworkError,
    SystemFault,
)
from dexpilot.ledger import checks
from dexpilot.ledger.models import (
    NONCE_CONSUMING_TX_STATUSES,
    PENDING_STATUSES,
    UNRESOLVED_TX_STATUSES,
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
    TokenQuarantineRow,
    TokenVerdictRow,
    TradeMode,
    TransactionRow,
    TxPurpose,
    TxStatus,
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
    OrderStatus.SHORT_FILLED: frozenset(),
}

# A transaction's fate. SIGNED -> SENT may repeat as SENT -> SENT (the identical raw
# transaction re-broadcast). MINED and REVERTED come with a receipt; DROPPED means another
# transaction used the nonce. A receipt or a drop is final.
TX_TRANSITIONS: Mapping[TxStatus, frozenset[TxStatus]] = {
    TxStatus.SIGNED: frozenset(
        {TxStatus.SENT, TxStatus.MINED, TxStatus.REVERTED, TxStatus.DROPPED}
    ),
    TxStatus.SENT: frozenset(
        {TxStatus.SENT, TxStatus.MINED, TxStatus.REVERTED, TxStatus.DROPPED}
    ),
    TxStatus.MINED: frozenset(),
    TxStatus.REVERTED: frozenset(),
    TxStatus.DROPPED: frozenset(),
}

# Transactions that only make sense as part of an order.
_ORDER_TX_PURPOSES = frozenset({TxPurpose.SWAP, TxPurpose.APPROVE})


class DuplicateOrder(SystemFault):
    """An order with this client order id is already recorded: doing it again could trade twice."""


class UnknownOrder(SystemFault):
    """No order with this client order id: the caller and the ledger disagree."""


class IllegalOrderTransition(SystemFault):
    """The requested status change (or fill) does not follow from the order's current state."""


class DuplicateTransaction(SystemFault):
    """A transaction with this hash is already recorded."""


class UnknownTransaction(SystemFault):
    """No transaction with this hash: the caller and the ledger disagree."""


class IllegalTransactionTransition(SystemFault):
    """The status change, or a new transaction for a nonce, does not fit what the ledger holds.

    Raised, for example, for a second transaction on a nonce already in flight that does not
    say which one it replaces, or for a receipt on a nonce another transaction already used:
    either would mean the ledger and the chain disagree.
    """


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
        self._migrate(revision, down=False)

    def downgrade(self, revision: str) -> None:
        """Migrate the database back to ``revision`` in one transaction."""
        self._migrate(revision, down=True)

    def _migrate(self, revision: str, *, down: bool) -> None:
        config = alembic_config()
        step = command.downgrade if down else command.upgrade
        with self._faults_mapped(), self._write_engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # A migration that rebuilds a referenced table (SQLite alters little in place)
                # drops it first, which enforced foreign keys refuse; the switch only works
                # outside a transaction. The references are checked before the commit instead.
                connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    config.attributes["connection"] = connection
                    step(config, revision)
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise SystemFault(f"migration to {revision} broke foreign keys: "
                                              f"{broken[:5]}")
            finally:
                if sqlite:
                    connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA foreign_keys=ON")

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
        strategy: str | None = None,
        group_id: str | None = None,
    ) -> OrderRow:
        """Write a NEW order. Call it before the transaction is sent.

        ``strategy`` names the strategy that wanted it; ``group_id`` is shared by the legs of one
        arbitrage (see ``orders_in_group``).
        """
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
            strategy=checks.optional_name(strategy, "strategy"),
            group_id=checks.optional_name(group_id, "group_id"),
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
        ``add_fill``. A replacement (gas bump) is SUBMITTED -> SUBMITTED with the new hash and
        the same nonce. If the hash is in ``transactions`` it must be that order's, with the
        order's nonce.
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
                _check_order_tx(
                    session, order, new_hash, nonce if nonce is not None else order.nonce
                )
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
        required, and the order becomes FILLED, or SHORT_FILLED if ``amount_out`` (what
        arrived) is below the order's ``min_amount_out``. Paper: the order must be NEW, chain
        fields are optional, and the order becomes SIMULATED.
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
                if amount_out < order.min_amount_out:
                    target = OrderStatus.SHORT_FILLED
                    order.error = (f"short fill: {amount_out} arrived, below amountOutMin "
                                   f"{order.min_amount_out} (quoted {order.expected_amount_out})")
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

    def order_of(self, tx: TransactionRow) -> OrderRow | None:
        """The order a transaction was signed for (``None`` for approvals without one,
        cancels and sweeps)."""
        if tx.order_id is None:
            return None
        with self.session(write=False) as session:
            return session.get(OrderRow, tx.order_id)

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

    def orders_in_group(self, group_id: str) -> list[OrderRow]:
        """The orders sharing ``group_id`` (the legs of one arbitrage), oldest first."""
        statement = (
            select(OrderRow)
            .where(OrderRow.group_id == checks.name(group_id, "group_id"))
            .order_by(col(OrderRow.id))
        )
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    # -- signed transactions -----------------------------------------------------------

    def record_transaction(
        self,
        *,
        env: str,
        wallet: str,
        purpose: TxPurpose | str,
        tx_hash: str,
        nonce: int,
        raw_tx: str,
        max_fee_per_gas: int,
        max_priority_fee_per_gas: int,
        gas_limit: int,
        order_client_id: str | None = None,
        deadline: int | None = None,
        replaces_tx_hash: str | None = None,
    ) -> TransactionRow:
        """Write a SIGNED transaction. Call it before the transaction is broadcast.

        ``raw_tx`` must hash to ``tx_hash`` (it is what a reconciler re-broadcasts). Swaps and
        approvals belong to an order (``order_client_id``; it must be a NEW or SUBMITTED live
        order of the same env and wallet). A second transaction for a nonce of ``wallet`` that
        is still in flight must name the one it replaces (``replaces_tx_hash``: a fee bump or a
        cancel); a nonce already used by a mined, reverted or dropped transaction is refused.
        """
        new_hash = checks.tx_hash(tx_hash)
        replaced = checks.tx_hash(replaces_tx_hash) if replaces_tx_hash is not None else None
        if replaced == new_hash:
            raise ValueError(f"transaction {new_hash} cannot replace itself")
        kind = checks.member(TxPurpose, purpose, "purpose")
        client_id = (
            checks.name(order_client_id, "order_client_id")
            if order_client_id is not None
            else None
        )
        if client_id is None and kind in _ORDER_TX_PURPOSES:
            raise ValueError(f"a {kind} transaction belongs to an order: give order_client_id")
        max_fee, tip = checks.fee_caps(max_fee_per_gas, max_priority_fee_per_gas)
        gas = checks.chain_int(gas_limit, "gas_limit")
        if gas == 0:
            raise ValueError("gas_limit must be greater than 0")
        now = utc_now()
        row = TransactionRow(
            created_at=now,
            updated_at=now,
            env=checks.env(env),
            wallet=checks.address(wallet, "wallet"),
            purpose=kind,
            tx_hash=new_hash,
            nonce=checks.chain_int(nonce, "nonce"),
            raw_tx=checks.signed_tx(raw_tx, new_hash),
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            gas_limit=gas,
            deadline=checks.chain_int(deadline, "deadline") if deadline is not None else None,
            status=TxStatus.SIGNED,
            replaces_tx_hash=replaced,
        )
        try:
            with self.session() as session:
                if _find_transaction(session, new_hash) is not None:
                    raise DuplicateTransaction(f"transaction {new_hash} is already in the ledger")
                if client_id is not None:
                    row.order_id = _order_for_tx(session, client_id, row).id
                _check_nonce_open(session, row)
                session.add(row)
        except IntegrityError as exc:
            if self.get_transaction(new_hash) is not None:
                raise DuplicateTransaction(
                    f"transaction {new_hash} is already in the ledger"
                ) from exc
            raise
        return row

    def update_transaction(
        self,
        tx_hash: str,
        status: TxStatus | str,
        *,
        block_number: int | None = None,
        gas_used: int | None = None,
        effective_gas_price: int | None = None,
        error: str | None = None,
    ) -> TransactionRow:
        """Move a transaction along ``TX_TRANSITIONS``.

        MINED and REVERTED need the receipt's ``block_number`` and ``gas_used`` (and may carry
        ``effective_gas_price``); the receipt fields are refused with any other status. A
        receipt uses up the nonce: in the same database transaction every other SIGNED or SENT
        transaction of that wallet and nonce becomes DROPPED. A receipt for a nonce another
        transaction already used is refused (``IllegalTransactionTransition``).
        """
        target = checks.member(TxStatus, status, "status")
        receipt = {"block_number": block_number, "gas_used": gas_used}
        for what, value in receipt.items():
            if value is not None:
                checks.chain_int(value, what)
        if effective_gas_price is not None:
            check_raw_amount(effective_gas_price, what="effective_gas_price")
        if target in NONCE_CONSUMING_TX_STATUSES:
            missing = [what for what, value in receipt.items() if value is None]
            if missing:
                raise ValueError(f"a {target} transaction needs {', '.join(missing)}")
        elif any(v is not None for v in (block_number, gas_used, effective_gas_price)):
            raise ValueError(
                "block_number, gas_used and effective_gas_price come from a receipt: "
                f"only a MINED or REVERTED transaction has them, not {target}"
            )
        if error is not None:
            checks.text_field(error, "error")
        the_hash = checks.tx_hash(tx_hash)
        with self.session() as session:
            tx = _locked_transaction(session, the_hash)
            if target not in TX_TRANSITIONS[tx.status]:
                raise IllegalTransactionTransition(
                    f"transaction {tx.tx_hash} is {tx.status}; it cannot become {target}"
                )
            now = utc_now()
            if target in NONCE_CONSUMING_TX_STATUSES:
                for other in _same_nonce(session, tx.env, tx.wallet, tx.nonce):
                    if other.id == tx.id:
                        continue
                    if other.status in NONCE_CONSUMING_TX_STATUSES:
                        raise IllegalTransactionTransition(
                            f"nonce {tx.nonce} of {tx.wallet} was already used by "
                            f"{other.tx_hash} ({other.status}); {tx.tx_hash} cannot be "
                            f"{target} too: ledger and chain disagree"
                        )
                    if other.status in UNRESOLVED_TX_STATUSES:
                        other.status = TxStatus.DROPPED
                        other.error = f"nonce {tx.nonce} used by {tx.tx_hash} ({target})"
                        other.updated_at = now
                        session.add(other)
                tx.block_number = block_number
                tx.gas_used = gas_used
                tx.effective_gas_price = effective_gas_price
            if error is not None:
                tx.error = error
            tx.status = target
            tx.updated_at = now
            session.add(tx)
        return tx

    def get_transaction(self, tx_hash: str) -> TransactionRow | None:
        statement = select(TransactionRow).where(
            TransactionRow.tx_hash == checks.tx_hash(tx_hash)
        )
        with self.session(write=False) as session:
            return session.exec(statement).first()

    def transactions_for_order(self, client_order_id: str) -> list[TransactionRow]:
        """Every transaction recorded for the order (approvals, swaps, replacements), oldest
        first."""
        statement = (
            select(TransactionRow)
            .join(OrderRow, col(TransactionRow.order_id) == col(OrderRow.id))
            .where(OrderRow.client_order_id == client_order_id)
            .order_by(col(TransactionRow.id))
        )
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    def unresolved_transactions(
        self, wallet: str, *, env: str | None = None
    ) -> list[TransactionRow]:
        """SIGNED or SENT transactions of ``wallet``, by nonce then age: reconcile these first."""
        statement = (
            select(TransactionRow)
            .where(TransactionRow.wallet == checks.address(wallet, "wallet"))
            .where(col(TransactionRow.status).in_(sorted(UNRESOLVED_TX_STATUSES)))
            .order_by(col(TransactionRow.nonce), col(TransactionRow.id))
        )
        if env is not None:
            statement = statement.where(TransactionRow.env == checks.env(env))
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    def max_nonce(self, wallet: str, *, env: str | None = None) -> int | None:
        """The highest nonce of any recorded transaction of ``wallet`` (any status); None if
        there is none. Dropped ones count: their nonce was used by another transaction."""
        statement = select(func.max(col(TransactionRow.nonce))).where(
            TransactionRow.wallet == checks.address(wallet, "wallet")
        )
        if env is not None:
            statement = statement.where(TransactionRow.env == checks.env(env))
        with self.session(write=False) as session:
            value = session.exec(statement).one()
        return None if value is None else int(value)

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
        row = _transition_row(env, from_state, to_state, reason, actor, created_at)
        with self.session() as session:
            session.add(row)
        return row

    def record_transition_if_current(
        self, env: str, from_state: str | Enum, to_state: str | Enum, *, reason: str,
        actor: str, created_at: datetime | None = None,
    ) -> str:
        """Store a state change only if the latest stored state is still ``from_state``
        (compare-and-set, in one write transaction: SQLite takes its write lock at BEGIN,
        PostgreSQL an advisory lock per environment). Returns the state found: the change
        was stored exactly when it equals ``from_state``."""
        row = _transition_row(env, from_state, to_state, reason, actor, created_at)
        with self.session() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                {"key": f"dexpilot-state-{row.env}"})
            latest = session.exec(_latest_transition(row.env)).first()
            current = latest.to_state if latest is not None else "INIT"
            if current == row.from_state:
                session.add(row)
            return current

    def latest_transition(self, env: str) -> StateTransitionRow | None:
        with self.session(write=False) as session:
            return session.exec(_latest_transition(checks.env(env))).first()

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
        [row] = self.record_balance_snapshots({token: amount}, wallet=wallet,
                                              block_number=block_number, taken_at=taken_at)
        return row

    def record_balance_snapshots(
        self,
        balances: Mapping[str, int],
        *,
        wallet: str,
        block_number: int,
        taken_at: datetime | None = None,
    ) -> list[BalanceSnapshotRow]:
        """One wallet's balances (token address -> raw amount) at one block, in one
        transaction: all or none, so a snapshot is never half-stored."""
        taken = checks.aware(taken_at, "taken_at") if taken_at is not None else utc_now()
        wallet = checks.address(wallet, "wallet")
        block = checks.chain_int(block_number, "block_number")
        rows = [BalanceSnapshotRow(wallet=wallet, token=checks.address(token, "token"),
                                   amount=check_raw_amount(amount, what="amount"),
                                   block_number=block, taken_at=taken)
                for token, amount in balances.items()]
        with self.session() as session:
            session.add_all(rows)
        return rows

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


    # -- token safety and quarantine -----------------------------------------------------

    def record_token_verdict(
        self,
        *,
        env: str,
        token: str,
        symbol: str,
        pool: str,
        block_number: int,
        safe: bool,
        reason: str,
        expires_at: datetime,
        buy_tax_bps: float | None = None,
        transfer_tax_bps: float | None = None,
        sell_tax_bps: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TokenVerdictRow:
        if not isinstance(safe, bool):
            raise TypeError(f"safe must be a bool, got {type(safe).__name__}")
        taxes = {"buy_tax_bps": buy_tax_bps, "transfer_tax_bps": transfer_tax_bps,
                 "sell_tax_bps": sell_tax_bps}
        for what, value in taxes.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise ValueError(f"{what} must be a finite number or None, got {value!r}")
        row = TokenVerdictRow(
            env=checks.env(env), token=checks.address(token, "token"),
            symbol=checks.name(symbol, "symbol"), pool=checks.address(pool, "pool"),
            block_number=checks.chain_int(block_number, "block_number"), safe=safe,
            reason=checks.text_field(reason, "reason"),
            expires_at=checks.aware(expires_at, "expires_at"),
            buy_tax_bps=None if buy_tax_bps is None else float(buy_tax_bps),
            transfer_tax_bps=None if transfer_tax_bps is None else float(transfer_tax_bps),
            sell_tax_bps=None if sell_tax_bps is None else float(sell_tax_bps),
            details=dict(details or {}),
        )
        with self.session() as session:
            session.add(row)
        return row

    def latest_token_verdict(self, env: str, token: str, *,
                             valid_at: datetime | None = None) -> TokenVerdictRow | None:
        """The newest verdict for ``token``; with ``valid_at``, only one not yet expired."""
        statement = select(TokenVerdictRow).where(
            TokenVerdictRow.env == checks.env(env),
            TokenVerdictRow.token == checks.address(token, "token"))
        if valid_at is not None:
            statement = statement.where(
                col(TokenVerdictRow.expires_at) > checks.aware(valid_at, "valid_at"))
        statement = statement.order_by(col(TokenVerdictRow.id).desc()).limit(1)
        with self.session(write=False) as session:
            return session.exec(statement).first()

    def quarantine_token(
        self,
        *,
        env: str,
        token: str,
        symbol: str,
        source: str,
        reason: str,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> TokenQuarantineRow:
        """Stop buying ``token`` until an operator clears it. A token already quarantined keeps
        its first quarantine (the first cause is the one to look at); that row is returned."""
        row = TokenQuarantineRow(
            env=checks.env(env), token=checks.address(token, "token"),
            symbol=checks.name(symbol, "symbol"), source=checks.name(source, "source"),
            reason=checks.text_field(reason, "reason"), actor=checks.name(actor, "actor"),
            details=dict(details or {}),
        )
        with self.session() as session:
            active = session.exec(select(TokenQuarantineRow).where(
                TokenQuarantineRow.env == row.env, TokenQuarantineRow.token == row.token,
                col(TokenQuarantineRow.cleared_at).is_(None))).first()
            if active is not None:
                return active
            session.add(row)
        return row

    def active_quarantines(self, env: str) -> list[TokenQuarantineRow]:
        statement = select(TokenQuarantineRow).where(
            TokenQuarantineRow.env == checks.env(env),
            col(TokenQuarantineRow.cleared_at).is_(None)).order_by(col(TokenQuarantineRow.id))
        with self.session(write=False) as session:
            return list(session.exec(statement).all())

    def clear_quarantine(self, *, env: str, token: str, actor: str,
                         reason: str) -> TokenQuarantineRow:
        """An operator's release of a quarantined token; ``ValueError`` if it is not
        quarantined. The row keeps who cleared it, when and why."""
        env_ = checks.env(env)
        address = checks.address(token, "token")
        by = checks.name(actor, "actor")
        why = checks.text_field(reason, "reason")
        with self.session() as session:
            active = session.exec(select(TokenQuarantineRow).where(
                TokenQuarantineRow.env == env_, TokenQuarantineRow.token == address,
                col(TokenQuarantineRow.cleared_at).is_(None))).first()
            if active is None:
                raise ValueError(f"token {address} is not quarantined in {env_}")
            active.cleared_at = utc_now()
            active.cleared_by = by
            active.clear_reason = why
            session.add(active)
        return active


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


def _transition_row(env: str, from_state: str | Enum, to_state: str | Enum, reason: str,
                    actor: str, created_at: datetime | None) -> StateTransitionRow:
    return StateTransitionRow(
        created_at=checks.aware(created_at, "created_at") if created_at else utc_now(),
        env=checks.env(env),
        from_state=checks.state(from_state, "from_state"),
        to_state=checks.state(to_state, "to_state"),
        reason=checks.text_field(reason, "reason"),
        actor=checks.name(actor, "actor"),
    )


def _latest_transition(env: str) -> SelectOfScalar[StateTransitionRow]:
    # Insertion order, not the timestamp: clocks of different hosts can disagree.
    return (select(StateTransitionRow).where(StateTransitionRow.env == env)
            .order_by(col(StateTransitionRow.id).desc()).limit(1))


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


def _check_order_tx(
    session: Session, order: OrderRow, tx_hash: str, nonce: int | None
) -> None:
    tx = _find_transaction(session, tx_hash)
    if tx is None:
        return  # not recorded through record_transaction (orders from before migration 0002)
    if tx.order_id != order.id:
        raise IllegalOrderTransition(
            f"transaction {tx_hash} does not belong to order {order.client_order_id!r}"
        )
    if nonce is not None and tx.nonce != nonce:
        raise IllegalOrderTransition(
            f"transaction {tx_hash} has nonce {tx.nonce}, but order "
            f"{order.client_order_id!r} uses nonce {nonce}"
        )


def _order_for_tx(session: Session, client_order_id: str, tx: TransactionRow) -> OrderRow:
    order = _locked_order(session, client_order_id)
    if (order.env, order.wallet) != (tx.env, tx.wallet):
        raise ValueError(
            f"order {client_order_id!r} is for {order.wallet} in {order.env}, not for "
            f"{tx.wallet} in {tx.env}"
        )
    if order.mode is not TradeMode.LIVE:
        raise IllegalOrderTransition(
            f"order {client_order_id!r} is a {order.mode} order: it never sends a transaction"
        )
    if order.status not in PENDING_STATUSES:
        raise IllegalOrderTransition(
            f"order {client_order_id!r} is {order.status}; only a NEW or SUBMITTED order can "
            "get a transaction"
        )
    return order


def _find_transaction(session: Session, tx_hash: str) -> TransactionRow | None:
    return session.exec(select(TransactionRow).where(TransactionRow.tx_hash == tx_hash)).first()


def _locked_transaction(session: Session, tx_hash: str) -> TransactionRow:
    statement = (
        select(TransactionRow).where(TransactionRow.tx_hash == tx_hash).with_for_update()
    )
    tx = session.exec(statement).first()
    if tx is None:
        raise UnknownTransaction(f"no transaction {tx_hash} in the ledger")
    return tx


def _same_nonce(session: Session, env: str, wallet: str, nonce: int) -> list[TransactionRow]:
    statement = (
        select(TransactionRow)
        .where(TransactionRow.env == env)
        .where(TransactionRow.wallet == wallet)
        .where(TransactionRow.nonce == nonce)
        .order_by(col(TransactionRow.id))
        .with_for_update()
    )
    return list(session.exec(statement).all())


def _check_nonce_open(session: Session, tx: TransactionRow) -> None:
    """Refuse a new transaction on a used nonce, or an unannounced second one on a live nonce."""
    others = _same_nonce(session, tx.env, tx.wallet, tx.nonce)
    used = [o for o in others if o.status not in UNRESOLVED_TX_STATUSES]
    if used:
        raise IllegalTransactionTransition(
            f"nonce {tx.nonce} of {tx.wallet} is already used ({used[0].tx_hash} is "
            f"{used[0].status}); a new transaction needs a new nonce"
        )
    if tx.replaces_tx_hash is None:
        if others:
            raise IllegalTransactionTransition(
                f"nonce {tx.nonce} of {tx.wallet} is in flight in {others[-1].tx_hash}; a "
                "second transaction on it is a replacement and must name it in "
                "replaces_tx_hash"
            )
        return
    if not any(o.tx_hash == tx.replaces_tx_hash for o in others):
        replaced = _find_transaction(session, tx.replaces_tx_hash)
        if replaced is None:
            raise UnknownTransaction(
                f"no transaction {tx.replaces_tx_hash} in the ledger to replace"
            )
        raise IllegalTransactionTransition(
            f"{tx.replaces_tx_hash} is nonce {replaced.nonce} of {replaced.wallet} in "
            f"{replaced.env}; a replacement must reuse its env, wallet and nonce "
            f"(got nonce {tx.nonce} of {tx.wallet} in {tx.env})"
        )


def _check_transition(order: OrderRow, target: OrderStatus) -> None:
    if target in (OrderStatus.FILLED, OrderStatus.SIMULATED):
        raise IllegalOrderTransition(
            f"order {order.client_order_id!r}: {target} is set by add_fill, with the fill"
        )
    if target not in ORDER_TRANSITIONS[order.status]:
        raise IllegalOrderTransition(
            f"order {order.client_order_id!r} is {order.status}; it cannot become {target}"
        )
