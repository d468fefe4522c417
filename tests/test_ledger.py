"""The ledger on SQLite and on a real PostgreSQL: migrations, exact money, order lifecycle."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from eth_account import Account
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from typer.testing import CliRunner

from dexpilot.errors import ApiError, ConfigError, NetworkError, SystemFault
from dexpilot.ledger import (
    BalanceSnapshotRow,
    DuplicateOrder,
    DuplicateTransaction,
    ErrorKind,
    ErrorRow,
    FillRow,
    IllegalOrderTransition,
    IllegalTransactionTransition,
    Ledger,
    OrderRow,
    OrderStatus,
    RawAmount,
    RiskDecisionRow,
    SignalRow,
    TradeMode,
    TransactionRow,
    TxPurpose,
    TxStatus,
    UnknownOrder,
    UnknownTransaction,
    UtcDateTime,
    check_raw_amount,
    error_kind_for,
    head_revision,
)
from dexpilot_cli.ledger import app as ledger_cli
from tests.fixtures.postgres import _free_port

WALLET = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OTHER_WALLET = "0x70997970C51812dC3A010c7D01b50e20d4DC79c8"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
COLD = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TX_A = "0x" + "ab" * 32
TX_B = "0x" + "cd" * 32
BIG_AMOUNTS = [0, 1, 2**63, 2**255 - 1, 2**256 - 1]
HEAD = "0005"
LEDGER_TABLES = {
    "orders", "fills", "balance_snapshots", "signals", "risk_decisions",
    "state_transitions", "errors", "profit_sweeps", "transactions", "swap_events",
    "ingest_cursors", "token_verdicts", "token_quarantines", "chain_instances",
}
# anvil's well-known dev keys for WALLET and OTHER_WALLET (public; they hold nothing real).
KEYS = {
    WALLET: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    OTHER_WALLET: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
}
GWEI = 10**9


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database per test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A migrated ledger."""
    ledger = Ledger(ledger_url)
    ledger.upgrade()
    try:
        yield ledger
    finally:
        ledger.dispose()


def _order(ledger: Ledger, client_order_id: str = "o-1", **overrides: Any) -> OrderRow:
    fields: dict[str, Any] = {
        "client_order_id": client_order_id,
        "env": "test",
        "wallet": WALLET,
        "venue": "uniswap_v2_a",
        "token_in": WETH,
        "token_out": USDC,
        "amount_in": 10**18,
        "min_amount_out": 2_990_000_000,
        "expected_amount_out": 3_000_000_000,
        "mode": TradeMode.LIVE,
    }
    fields.update(overrides)
    return ledger.record_order(**fields)


def _signed(
    nonce: int, *, wallet: str = WALLET, max_fee: int = 30 * GWEI, tip: int = GWEI,
    gas: int = 200_000, to: str = USDC,
) -> tuple[str, str]:
    """A real EIP-1559 signed transaction: (tx_hash, raw_tx)."""
    signed = Account.sign_transaction(
        {
            "type": 2, "chainId": 31337, "nonce": nonce, "to": to, "value": 0, "gas": gas,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "data": b"",
        },
        KEYS[wallet],
    )
    return signed.hash.to_0x_hex(), signed.raw_transaction.to_0x_hex()


def _tx(
    ledger: Ledger, nonce: int, *, wallet: str = WALLET, max_fee: int = 30 * GWEI,
    tip: int = GWEI, gas: int = 200_000, **overrides: Any,
) -> TransactionRow:
    fields = _tx_fields(nonce, wallet=wallet, max_fee=max_fee, tip=tip, gas=gas)
    fields.update(overrides)
    return ledger.record_transaction(**fields)


def _tx_fields(
    nonce: int, *, wallet: str = WALLET, max_fee: int = 30 * GWEI, tip: int = GWEI,
    gas: int = 200_000,
) -> dict[str, Any]:
    """``record_transaction`` arguments for a real signed swap of order "o-1"."""
    tx_hash, raw_tx = _signed(nonce, wallet=wallet, max_fee=max_fee, tip=tip, gas=gas)
    return {
        "env": "test",
        "wallet": wallet,
        "purpose": TxPurpose.SWAP,
        "tx_hash": tx_hash,
        "nonce": nonce,
        "raw_tx": raw_tx,
        "max_fee_per_gas": max_fee,
        "max_priority_fee_per_gas": tip,
        "gas_limit": gas,
        "order_client_id": "o-1",
    }


def _migrate(ledger: Ledger, revision: str, *, down: bool = False) -> None:
    (ledger.downgrade if down else ledger.upgrade)(revision)


def _count(ledger: Ledger, model: type[SQLModel]) -> int:
    with ledger.session(write=False) as session:
        return len(session.exec(select(model)).all())


# -- migrations ------------------------------------------------------------------------


def test_upgrade_from_empty_reaches_head(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    try:
        assert ledger.current_revision() is None
        ledger.upgrade()
        assert ledger.current_revision() == head_revision() == HEAD
        assert ledger.is_at_head()
        tables = set(sa.inspect(ledger.engine).get_table_names())
        assert tables >= LEDGER_TABLES
        # Running it again is a no-op, not an error: deployments upgrade on every start.
        ledger.upgrade()
        assert ledger.current_revision() == HEAD
    finally:
        ledger.dispose()


def test_downgrade_to_base_removes_every_table(ledger: Ledger) -> None:
    _migrate(ledger, "base", down=True)
    assert set(sa.inspect(ledger.engine).get_table_names()) & LEDGER_TABLES == set()
    assert ledger.current_revision() is None


def _insert_0001_order(ledger: Ledger, created: datetime) -> None:
    """An order and its fill written the way revision 0001 knew them: plain SQL, no models."""
    amounts = ("amount_in", "min_out", "expected", "out", "gas_price")
    order_sql = sa.text(
        "INSERT INTO orders (client_order_id, created_at, updated_at, env, wallet, venue, "
        "token_in, token_out, amount_in, min_amount_out, expected_amount_out, status, mode, "
        "tx_hash, nonce) VALUES ('old-1', :at, :at, 'test', :wallet, 'uniswap_v2_a', :weth, "
        ":usdc, :amount_in, :min_out, :expected, 'SUBMITTED', 'live', :tx, 3)"
    ).bindparams(
        sa.bindparam("at", type_=UtcDateTime()),
        *(sa.bindparam(name, type_=RawAmount()) for name in amounts[:3]),
    )
    fill_sql = sa.text(
        "INSERT INTO fills (order_id, tx_hash, nonce, block_number, gas_used, "
        "effective_gas_price, token_in, token_out, amount_in, amount_out, filled_at) "
        "SELECT id, :tx, 3, 77, 90000, :gas_price, :weth, :usdc, :amount_in, :out, :at "
        "FROM orders WHERE client_order_id = 'old-1'"
    ).bindparams(
        sa.bindparam("at", type_=UtcDateTime()),
        *(sa.bindparam(name, type_=RawAmount()) for name in ("amount_in", "out", "gas_price")),
    )
    values = {
        "at": created, "wallet": WALLET, "weth": WETH, "usdc": USDC, "tx": TX_A,
        "amount_in": 2**255 - 1, "min_out": 2**200, "expected": 2**201, "out": 2**201 - 1,
        "gas_price": 2**70,
    }
    with ledger.engine.begin() as connection:
        connection.execute(order_sql, values)
        connection.execute(fill_sql, values)


def test_upgrade_0001_to_0002_keeps_existing_orders(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    try:
        ledger.upgrade("0001")
        created = datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
        _insert_0001_order(ledger, created)
        ledger.upgrade()
        assert ledger.current_revision() == HEAD
        order = ledger.get_order("old-1")
        assert order is not None
        assert (order.strategy, order.group_id) == (None, None)
        assert (order.status, order.tx_hash, order.nonce, order.created_at) == (
            OrderStatus.SUBMITTED, TX_A, 3, created,
        )
        assert (order.amount_in, order.min_amount_out, order.expected_amount_out) == (
            2**255 - 1, 2**200, 2**201,
        )
        [fill] = ledger.fills_for("old-1")
        assert (fill.amount_out, fill.effective_gas_price) == (2**201 - 1, 2**70)
        # The old order can carry on under the new schema: a gas bump of its nonce.
        bump = _tx(ledger, 3, order_client_id="old-1")
        ledger.update_order_status("old-1", OrderStatus.SUBMITTED, tx_hash=bump.tx_hash)
        assert _schema_diff(ledger, SQLModel.metadata) == []
    finally:
        ledger.dispose()


def test_downgrade_to_0001_keeps_orders_and_drops_the_new_parts(ledger: Ledger) -> None:
    _order(ledger, "o-1", strategy="arb", group_id="g-1")
    sent = _tx(ledger, 0)
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=sent.tx_hash, nonce=0)
    ledger.update_transaction(sent.tx_hash, TxStatus.MINED, block_number=5, gas_used=21_000)
    # A fill references the order: on SQLite the downgrade must not rebuild the orders table.
    ledger.add_fill(
        "o-1", tx_hash=sent.tx_hash, nonce=0, block_number=5, gas_used=21_000,
        effective_gas_price=GWEI, amount_in=10**18, amount_out=3 * 10**9,
    )
    _migrate(ledger, "0001", down=True)
    assert ledger.current_revision() == "0001"
    inspector = sa.inspect(ledger.engine)
    assert "transactions" not in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("orders")}
    assert {"strategy", "group_id"} & columns == set()
    assert "ix_orders_group_id" not in {i["name"] for i in inspector.get_indexes("orders")}
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT o.client_order_id, o.status, f.tx_hash FROM orders o "
                    "JOIN fills f ON f.order_id = o.id")
        ).all()
    assert [tuple(r) for r in rows] == [("o-1", "FILLED", sent.tx_hash)]
    ledger.upgrade()
    order = ledger.get_order("o-1")
    assert order is not None and (order.status, order.group_id) == (OrderStatus.FILLED, None)
    assert _schema_diff(ledger, SQLModel.metadata) == []


def _schema_diff(ledger: Ledger, metadata: sa.MetaData) -> list[Any]:
    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_models_and_migrations_do_not_drift(ledger: Ledger) -> None:
    assert _schema_diff(ledger, SQLModel.metadata) == []


def test_drift_check_notices_a_model_change(ledger: Ledger) -> None:
    # Guards the test above against passing vacuously (e.g. comparing nothing).
    changed = sa.MetaData(naming_convention=SQLModel.metadata.naming_convention)
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["orders"].append_column(sa.Column("venue_fee_ppm", sa.Integer()))
    changed.tables["fills"].c.amount_out.type = sa.Integer()
    diff = _schema_diff(ledger, changed)
    # compare_metadata gives tuples, or lists of tuples for column modifications.
    kinds = {str(entry[0][0] if isinstance(entry, list) else entry[0]) for entry in diff}
    assert "add_column" in kinds
    assert "modify_type" in kinds


# -- money -----------------------------------------------------------------------------


def test_raw_amounts_round_trip_exactly(ledger: Ledger) -> None:
    for block, amount in enumerate(BIG_AMOUNTS):
        ledger.record_balance_snapshot(
            wallet=WALLET, token=WETH, amount=amount, block_number=block
        )
    # A new Ledger (new engine, new connections) so nothing comes from an identity map.
    reader = Ledger(ledger.engine.url.render_as_string(hide_password=False))
    try:
        with reader.session(write=False) as session:
            rows = session.exec(
                select(BalanceSnapshotRow).order_by(col(BalanceSnapshotRow.block_number))
            ).all()
            stored = [row.amount for row in rows]
            raw = session.execute(sa.text("SELECT amount FROM balance_snapshots")).scalars().all()
    finally:
        reader.dispose()
    assert stored == BIG_AMOUNTS
    assert all(type(value) is int for value in stored)
    if ledger.backend == "sqlite":
        # Text, not REAL: SQLite's numeric affinity would have turned 2**255 into a float.
        assert all(isinstance(value, str) and len(value) == 78 for value in raw)
    else:
        assert all(isinstance(value, Decimal) for value in raw)


def test_raw_amount_comparisons_and_order_are_numeric(ledger: Ledger) -> None:
    for block, amount in enumerate([10, 9, 2**200, 100, 2**63]):
        ledger.record_balance_snapshot(
            wallet=WALLET, token=WETH, amount=amount, block_number=block
        )
    with ledger.session(write=False) as session:
        ordered = session.exec(
            select(BalanceSnapshotRow.amount).order_by(col(BalanceSnapshotRow.amount))
        ).all()
        above = session.exec(
            select(BalanceSnapshotRow.amount).where(col(BalanceSnapshotRow.amount) > 99)
        ).all()
    assert list(ordered) == [9, 10, 100, 2**63, 2**200]
    assert sorted(above) == [100, 2**63, 2**200]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.0, TypeError),
        (1e18, TypeError),
        (True, TypeError),
        (Decimal(5), TypeError),
        ("5", TypeError),
        (-1, ValueError),
        (2**256, ValueError),
    ],
)
def test_bad_raw_amounts_are_refused(ledger: Ledger, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="amount"):
        check_raw_amount(value)
    with pytest.raises(error, match="amount"):
        ledger.record_balance_snapshot(wallet=WALLET, token=WETH, amount=value, block_number=1)  # type: ignore[arg-type]
    # The column type refuses it too, for code that writes rows without the helpers.
    with pytest.raises(error, match="amount"), ledger.session() as session:
        session.add(
            BalanceSnapshotRow(block_number=1, wallet=WALLET, token=WETH, amount=value)  # type: ignore[arg-type]
        )
    assert _count(ledger, BalanceSnapshotRow) == 0


# -- orders ----------------------------------------------------------------------------


def test_order_lifecycle_reads_back_exact_values(ledger: Ledger) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    huge = 2**255 - 1
    _order(
        ledger, "cycle-7-weth-usdc", amount_in=huge, min_amount_out=2**200,
        expected_amount_out=2**201, created_at=created,
    )
    recorded = ledger.get_order("cycle-7-weth-usdc")
    assert recorded is not None and recorded.status is OrderStatus.NEW
    ledger.update_order_status(
        "cycle-7-weth-usdc", OrderStatus.SUBMITTED, tx_hash=TX_A.upper().replace("0X", "0x"),
        nonce=42,
    )
    filled_at = datetime(2026, 1, 2, 3, 4, 17, tzinfo=UTC)
    ledger.add_fill(
        "cycle-7-weth-usdc",
        tx_hash=TX_A,
        nonce=42,
        block_number=19_000_000,
        gas_used=127_345,
        effective_gas_price=2**70 + 3,
        amount_in=huge,
        amount_out=2**201 - 7,
        filled_at=filled_at,
    )

    reader = Ledger(ledger.engine.url.render_as_string(hide_password=False))
    try:
        order = reader.get_order("cycle-7-weth-usdc")
        fills = reader.fills_for("cycle-7-weth-usdc")
    finally:
        reader.dispose()
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert order.mode is TradeMode.LIVE
    assert (order.amount_in, order.min_amount_out, order.expected_amount_out) == (
        huge, 2**200, 2**201,
    )
    assert (order.tx_hash, order.nonce) == (TX_A, 42)
    assert order.created_at == created and order.created_at.tzinfo is not None
    assert order.updated_at >= created
    assert (order.wallet, order.token_in, order.token_out) == (WALLET, WETH, USDC)
    assert len(fills) == 1
    fill = fills[0]
    assert fill.order_id == order.id
    assert (fill.tx_hash, fill.nonce, fill.block_number, fill.gas_used) == (
        TX_A, 42, 19_000_000, 127_345,
    )
    assert fill.effective_gas_price == 2**70 + 3
    assert (fill.amount_in, fill.amount_out) == (huge, 2**201 - 7)
    assert (fill.token_in, fill.token_out) == (WETH, USDC)
    assert fill.filled_at == filled_at
    assert ledger.pending_orders(WALLET) == []


def test_unique_client_order_id_is_enforced(ledger: Ledger) -> None:
    _order(ledger, "dup")
    with pytest.raises(DuplicateOrder, match="'dup' is already in the ledger"):
        _order(ledger, "dup", amount_in=5)
    # The database itself refuses it, not only the helper.
    with pytest.raises(IntegrityError), ledger.session() as session:
        original = ledger.get_order("dup")
        assert original is not None
        copy = OrderRow.model_validate(original.model_dump(exclude={"id"}))
        session.add(copy)
    orders = [o for o in ledger.pending_orders(WALLET) if o.client_order_id == "dup"]
    assert len(orders) == 1 and orders[0].amount_in == 10**18


def test_illegal_order_changes_are_refused_and_change_nothing(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    with pytest.raises(IllegalOrderTransition, match="add_fill"):
        ledger.update_order_status("o-1", OrderStatus.FILLED)
    with pytest.raises(ValueError, match="tx_hash"):
        ledger.update_order_status("o-1", "SUBMITTED", nonce=1)
    with pytest.raises(ValueError, match="error text"):
        ledger.update_order_status("o-1", OrderStatus.FAILED)
    with pytest.raises(ValueError, match="not one of"):
        ledger.update_order_status("o-1", "DONE")
    with pytest.raises(IllegalOrderTransition, match="only a SUBMITTED"):
        ledger.add_fill("o-1", amount_in=1, amount_out=1)
    with pytest.raises(UnknownOrder, match="no order 'nope'"):
        ledger.update_order_status("nope", OrderStatus.CANCELLED)
    order = ledger.get_order("o-1")
    assert order is not None
    assert (order.status, order.tx_hash, order.nonce, order.error) == (
        OrderStatus.NEW, None, None, None,
    )
    assert _count(ledger, FillRow) == 0

    ledger.update_order_status("o-1", OrderStatus.FAILED, error="quote expired")
    with pytest.raises(IllegalOrderTransition, match="FAILED; it cannot become SUBMITTED"):
        ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=TX_A, nonce=1)


def test_replacement_keeps_the_nonce_and_the_fill_must_match(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=TX_A, nonce=7)
    with pytest.raises(IllegalOrderTransition, match="nonce 7; refusing nonce 8"):
        ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=TX_B, nonce=8)
    fill: dict[str, Any] = {
        "nonce": 7, "block_number": 10, "gas_used": 21_000, "effective_gas_price": 10**9,
        "amount_in": 10**18, "amount_out": 3 * 10**9,
    }
    with pytest.raises(SystemFault, match="does not match order"):
        ledger.add_fill("o-1", tx_hash=TX_B, **fill)
    with pytest.raises(ValueError, match="a live fill needs block_number"):
        ledger.add_fill("o-1", tx_hash=TX_A, **{**fill, "block_number": None})
    assert _count(ledger, FillRow) == 0

    # A gas-bumped replacement (same nonce, new hash) is what got mined.
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=TX_B)
    ledger.add_fill("o-1", tx_hash=TX_B, **fill)
    order = ledger.get_order("o-1")
    assert order is not None and (order.status, order.tx_hash, order.nonce) == (
        OrderStatus.FILLED, TX_B, 7,
    )
    with pytest.raises(IllegalOrderTransition, match="FILLED"):
        ledger.add_fill("o-1", tx_hash=TX_B, **fill)


def test_paper_order_is_simulated_by_its_fill(ledger: Ledger) -> None:
    _order(ledger, "paper-1", mode="paper")
    ledger.add_fill("paper-1", amount_in=10**18, amount_out=2_995_000_000, block_number=5)
    order = ledger.get_order("paper-1")
    assert order is not None and order.status is OrderStatus.SIMULATED
    [fill] = ledger.fills_for("paper-1")
    assert (fill.tx_hash, fill.block_number, fill.amount_out) == (None, 5, 2_995_000_000)


def test_pending_orders_are_the_wallets_new_and_submitted_ones(ledger: Ledger) -> None:
    _order(ledger, "a-new")
    _order(ledger, "a-sent")
    ledger.update_order_status("a-sent", OrderStatus.SUBMITTED, tx_hash=TX_A, nonce=1)
    _order(ledger, "a-rejected")
    ledger.update_order_status("a-rejected", OrderStatus.REJECTED, error="max_trade_quote")
    _order(ledger, "b-new", wallet=OTHER_WALLET)
    _order(ledger, "a-dev", env="dev")
    pending = ledger.pending_orders(WALLET.lower(), env="test")
    assert [o.client_order_id for o in pending] == ["a-new", "a-sent"]
    assert [o.client_order_id for o in ledger.pending_orders(WALLET)] == [
        "a-new", "a-sent", "a-dev",
    ]


def test_orders_keep_strategy_and_group(ledger: Ledger) -> None:
    _order(ledger, "leg-1", strategy="cross_venue_arb", group_id="arb-7")
    _order(ledger, "solo", strategy="momentum")
    _order(ledger, "leg-2", strategy="cross_venue_arb", group_id="arb-7", venue="uniswap_v3")
    legs = ledger.orders_in_group("arb-7")
    assert [(o.client_order_id, o.strategy, o.group_id) for o in legs] == [
        ("leg-1", "cross_venue_arb", "arb-7"), ("leg-2", "cross_venue_arb", "arb-7"),
    ]
    solo = ledger.get_order("solo")
    assert solo is not None and (solo.strategy, solo.group_id) == ("momentum", None)
    assert ledger.orders_in_group("arb-8") == []
    with pytest.raises(ValueError, match="group_id is longer than 64"):
        _order(ledger, "bad", group_id="g" * 65)
    with pytest.raises(ValueError, match="strategy"):
        _order(ledger, "bad", strategy=" ")
    with pytest.raises(ValueError, match="group_id"):
        ledger.orders_in_group("")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wallet": "0x1234"}, "wallet"),
        ({"wallet": WALLET.lower().replace("f39f", "F39f")}, "wallet"),
        ({"token_out": WETH}, "same token"),
        ({"env": "staging"}, "env"),
        ({"mode": "real"}, "mode"),
        ({"min_amount_out": 0}, "min_amount_out must be greater than 0"),
        ({"amount_in": 1.5}, "amount_in must be an int"),
        ({"client_order_id": ""}, "client_order_id"),
        ({"created_at": datetime(2026, 1, 1)}, "naive"),
    ],
)
def test_bad_order_input_is_refused_and_writes_nothing(
    ledger: Ledger, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        _order(ledger, "bad", **overrides)
    assert _count(ledger, OrderRow) == 0


def test_concurrent_writers_all_land(ledger: Ledger) -> None:
    # Several threads (as Prefect task runners would) writing at once: on SQLite this relies
    # on WAL, busy_timeout and BEGIN IMMEDIATE; nothing may fail with "database is locked".
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(15):
                cid = f"w{worker}-{i}"
                _order(ledger, cid)
                ledger.update_order_status(cid, OrderStatus.CANCELLED)
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _count(ledger, OrderRow) == 90
    assert ledger.pending_orders(WALLET) == []


# -- signed transactions ---------------------------------------------------------------


def test_transaction_lifecycle_reads_back_exact_values(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    approve = _tx(ledger, 5, purpose="approve", gas=60_000)
    huge_fee = 2**70 + 1
    swap = _tx(
        ledger, 6, max_fee=huge_fee, tip=2 * GWEI, gas=350_000, deadline=1_767_225_600,
    )
    assert (swap.status, swap.order_id, swap.replaces_tx_hash) == (TxStatus.SIGNED, 1, None)
    assert [t.tx_hash for t in ledger.unresolved_transactions(WALLET)] == [
        approve.tx_hash, swap.tx_hash,
    ]
    ledger.update_transaction(approve.tx_hash, TxStatus.SENT)
    ledger.update_transaction(
        approve.tx_hash, "MINED", block_number=100, gas_used=46_000,
        effective_gas_price=12 * GWEI,
    )
    ledger.update_transaction(swap.tx_hash, TxStatus.SENT)
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=swap.tx_hash, nonce=6)
    # Re-broadcasting the identical raw transaction (after a restart) is SENT -> SENT.
    ledger.update_transaction(swap.tx_hash, TxStatus.SENT)
    ledger.update_transaction(
        swap.tx_hash, TxStatus.MINED, block_number=101, gas_used=127_345,
        effective_gas_price=2**64 + 7,
    )

    reader = Ledger(ledger.engine.url.render_as_string(hide_password=False))
    try:
        txs = reader.transactions_for_order("o-1")
        again = reader.get_transaction(swap.tx_hash.upper().replace("0X", "0x"))
        max_nonce = reader.max_nonce(WALLET.lower())
    finally:
        reader.dispose()
    assert [t.purpose for t in txs] == [TxPurpose.APPROVE, TxPurpose.SWAP]
    first, mined = txs
    assert (first.status, first.block_number, first.gas_used, first.effective_gas_price) == (
        TxStatus.MINED, 100, 46_000, 12 * GWEI,
    )
    assert again is not None and again.id == mined.id
    _, raw = _signed(6, max_fee=huge_fee, tip=2 * GWEI, gas=350_000)
    assert (mined.env, mined.wallet, mined.tx_hash, mined.nonce, mined.raw_tx) == (
        "test", WALLET, swap.tx_hash, 6, raw,
    )
    assert (mined.max_fee_per_gas, mined.max_priority_fee_per_gas, mined.gas_limit) == (
        huge_fee, 2 * GWEI, 350_000,
    )
    assert (mined.deadline, mined.status, mined.block_number, mined.gas_used) == (
        1_767_225_600, TxStatus.MINED, 101, 127_345,
    )
    assert mined.effective_gas_price == 2**64 + 7
    assert (mined.replaces_tx_hash, mined.error) == (None, None)
    assert mined.created_at.tzinfo is not None and mined.updated_at >= mined.created_at
    assert max_nonce == 6
    assert ledger.unresolved_transactions(WALLET) == []
    assert ledger.max_nonce(OTHER_WALLET) is None
    assert ledger.transactions_for_order("nope") == []


def test_replacement_chain_drops_the_replaced_transaction(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    first = _tx(ledger, 7)
    ledger.update_transaction(first.tx_hash, TxStatus.SENT)
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=first.tx_hash, nonce=7)
    # A second transaction on a nonce in flight must say what it replaces.
    with pytest.raises(IllegalTransactionTransition, match="must name it in replaces_tx_hash"):
        _tx(ledger, 7, max_fee=45 * GWEI, tip=2 * GWEI)
    with pytest.raises(IllegalTransactionTransition, match="must reuse its env, wallet and nonce"):
        _tx(ledger, 8, max_fee=45 * GWEI, tip=2 * GWEI, replaces_tx_hash=first.tx_hash)
    with pytest.raises(UnknownTransaction, match="to replace"):
        _tx(ledger, 7, max_fee=45 * GWEI, tip=2 * GWEI, replaces_tx_hash=TX_A)
    # The fee bump: same nonce, new hash, linked to the one it replaces.
    bump = _tx(ledger, 7, max_fee=45 * GWEI, tip=2 * GWEI, replaces_tx_hash=first.tx_hash)
    ledger.update_transaction(bump.tx_hash, TxStatus.SENT)
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=bump.tx_hash)
    assert [(t.tx_hash, t.status) for t in ledger.unresolved_transactions(WALLET)] == [
        (first.tx_hash, TxStatus.SENT), (bump.tx_hash, TxStatus.SENT),
    ]
    ledger.update_transaction(
        bump.tx_hash, TxStatus.MINED, block_number=200, gas_used=130_000,
        effective_gas_price=40 * GWEI,
    )
    old, new = ledger.transactions_for_order("o-1")
    assert (old.tx_hash, old.status, old.block_number) == (first.tx_hash, TxStatus.DROPPED, None)
    assert old.error == f"nonce 7 used by {bump.tx_hash} (MINED)"
    assert (new.tx_hash, new.status, new.replaces_tx_hash, new.nonce) == (
        bump.tx_hash, TxStatus.MINED, first.tx_hash, 7,
    )
    assert ledger.unresolved_transactions(WALLET) == []
    ledger.add_fill(
        "o-1", tx_hash=bump.tx_hash, nonce=7, block_number=200, gas_used=130_000,
        effective_gas_price=40 * GWEI, amount_in=10**18, amount_out=3 * 10**9,
    )
    # The nonce is used: nothing new may be signed on it, and the dropped one stays dropped.
    _order(ledger, "o-2")
    with pytest.raises(IllegalTransactionTransition, match=r"nonce 7 .* is already used"):
        _tx(ledger, 7, max_fee=60 * GWEI, order_client_id="o-2", replaces_tx_hash=bump.tx_hash)
    with pytest.raises(IllegalTransactionTransition, match="DROPPED; it cannot become MINED"):
        ledger.update_transaction(first.tx_hash, "MINED", block_number=200, gas_used=1)
    assert _count(ledger, TransactionRow) == 2


def test_a_second_receipt_for_a_used_nonce_is_refused(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    first = _tx(ledger, 3)
    bump = _tx(ledger, 3, max_fee=40 * GWEI, replaces_tx_hash=first.tx_hash)
    ledger.update_transaction(bump.tx_hash, TxStatus.REVERTED, block_number=9, gas_used=50_000,
                              error="UniswapV2Router: EXPIRED")
    assert ledger.get_transaction(first.tx_hash).status is TxStatus.DROPPED  # type: ignore[union-attr]
    # A cancel (no order) of an unrelated in-flight nonce, then a contradicting receipt.
    stuck = _tx(ledger, 4)
    cancel = _tx(ledger, 4, purpose="cancel", order_client_id=None, max_fee=50 * GWEI,
                 replaces_tx_hash=stuck.tx_hash)
    assert cancel.order_id is None
    ledger.update_transaction(cancel.tx_hash, TxStatus.MINED, block_number=10, gas_used=21_000)
    with ledger.session() as session:
        # Simulate a ledger that lost the drop: the replaced row is SENT again.
        statement = select(TransactionRow).where(TransactionRow.tx_hash == stuck.tx_hash)
        row = session.exec(statement).one()
        row.status = TxStatus.SENT
        session.add(row)
    with pytest.raises(SystemFault, match=f"nonce 4 .* already used by {cancel.tx_hash}"):
        ledger.update_transaction(stuck.tx_hash, TxStatus.MINED, block_number=10, gas_used=1)
    assert ledger.get_transaction(stuck.tx_hash).status is TxStatus.SENT  # type: ignore[union-attr]
    reverted = ledger.get_transaction(bump.tx_hash)
    assert reverted is not None and reverted.error == "UniswapV2Router: EXPIRED"


def test_illegal_transaction_changes_are_refused_and_change_nothing(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    tx = _tx(ledger, 1)
    with pytest.raises(ValueError, match="needs block_number, gas_used"):
        ledger.update_transaction(tx.tx_hash, TxStatus.MINED)
    with pytest.raises(ValueError, match="needs gas_used"):
        ledger.update_transaction(tx.tx_hash, TxStatus.REVERTED, block_number=3)
    with pytest.raises(ValueError, match="only a MINED or REVERTED"):
        ledger.update_transaction(tx.tx_hash, TxStatus.SENT, block_number=3)
    with pytest.raises(ValueError, match="not one of"):
        ledger.update_transaction(tx.tx_hash, "CONFIRMED")
    with pytest.raises(ValueError, match="gas_used must be within"):
        ledger.update_transaction(tx.tx_hash, TxStatus.MINED, block_number=3, gas_used=-1)
    with pytest.raises(ValueError, match="error must be a non-empty string"):
        ledger.update_transaction(tx.tx_hash, TxStatus.DROPPED, error="")
    with pytest.raises(UnknownTransaction, match=f"no transaction {TX_A}"):
        ledger.update_transaction(TX_A, TxStatus.SENT)
    with pytest.raises(ValueError, match="not a transaction hash"):
        ledger.update_transaction("0x1234", TxStatus.SENT)
    unchanged = ledger.get_transaction(tx.tx_hash)
    assert unchanged is not None
    assert (unchanged.status, unchanged.block_number, unchanged.error) == (
        TxStatus.SIGNED, None, None,
    )

    ledger.update_transaction(tx.tx_hash, TxStatus.DROPPED, error="nonce used elsewhere")
    for target in TxStatus:
        receipt: dict[str, Any] = (
            {"block_number": 1, "gas_used": 1} if target in ("MINED", "REVERTED") else {}
        )
        with pytest.raises(IllegalTransactionTransition, match="DROPPED; it cannot become"):
            ledger.update_transaction(tx.tx_hash, target, **receipt)
    with pytest.raises(IllegalTransactionTransition, match="already used"):
        _tx(ledger, 1, max_fee=31 * GWEI, replaces_tx_hash=tx.tx_hash)


def test_unresolved_transactions_are_ordered_by_nonce_then_age(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    _order(ledger, "o-b", wallet=OTHER_WALLET)
    three = _tx(ledger, 3)
    one = _tx(ledger, 1)
    two = _tx(ledger, 2)
    one_bump = _tx(ledger, 1, max_fee=40 * GWEI, replaces_tx_hash=one.tx_hash)
    zero = _tx(ledger, 0)
    ledger.update_transaction(zero.tx_hash, TxStatus.MINED, block_number=1, gas_used=21_000)
    ledger.update_transaction(two.tx_hash, TxStatus.SENT)
    other = _tx(ledger, 0, wallet=OTHER_WALLET, order_client_id="o-b")
    sweep = _tx(ledger, 4, purpose=TxPurpose.SWEEP, order_client_id=None, env="test")
    assert [t.tx_hash for t in ledger.unresolved_transactions(WALLET)] == [
        one.tx_hash, one_bump.tx_hash, two.tx_hash, three.tx_hash, sweep.tx_hash,
    ]
    assert [t.tx_hash for t in ledger.unresolved_transactions(OTHER_WALLET)] == [other.tx_hash]
    assert ledger.unresolved_transactions(WALLET, env="dev") == []
    assert (ledger.max_nonce(WALLET), ledger.max_nonce(OTHER_WALLET)) == (4, 0)
    assert ledger.max_nonce(WALLET, env="dev") is None
    with pytest.raises(ValueError, match="wallet"):
        ledger.unresolved_transactions("0xnope")


def test_duplicate_tx_hash_is_refused(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    first = _tx(ledger, 2)
    with pytest.raises(DuplicateTransaction, match=f"{first.tx_hash} is already in the ledger"):
        _tx(ledger, 2)
    # The database itself refuses it, not only the helper.
    with pytest.raises(IntegrityError), ledger.session() as session:
        copy = TransactionRow.model_validate(first.model_dump(exclude={"id"}))
        session.add(copy)
    assert _count(ledger, TransactionRow) == 1


def test_transactions_must_fit_their_order(ledger: Ledger) -> None:
    _order(ledger, "o-1")
    _order(ledger, "paper", mode="paper")
    _order(ledger, "other", wallet=OTHER_WALLET)
    _order(ledger, "done")
    ledger.update_order_status("done", OrderStatus.CANCELLED)
    with pytest.raises(UnknownOrder, match="no order 'nope'"):
        _tx(ledger, 1, order_client_id="nope")
    with pytest.raises(IllegalOrderTransition, match="paper order"):
        _tx(ledger, 1, order_client_id="paper")
    with pytest.raises(IllegalOrderTransition, match="CANCELLED; only a NEW or SUBMITTED"):
        _tx(ledger, 1, order_client_id="done")
    with pytest.raises(ValueError, match=f"is for {OTHER_WALLET} in test"):
        _tx(ledger, 1, order_client_id="other")
    assert _count(ledger, TransactionRow) == 0
    # The order's hash must be one of its own transactions, with its nonce.
    approve = _tx(ledger, 1, purpose="approve")
    swap = _tx(ledger, 2)
    with pytest.raises(IllegalOrderTransition, match="has nonce 1, but order 'o-1' uses nonce 2"):
        ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=approve.tx_hash, nonce=2)
    other = _tx(ledger, 0, wallet=OTHER_WALLET, order_client_id="other")
    with pytest.raises(IllegalOrderTransition, match="does not belong to order 'o-1'"):
        ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=other.tx_hash, nonce=0)
    ledger.update_order_status("o-1", OrderStatus.SUBMITTED, tx_hash=swap.tx_hash, nonce=2)


def test_bad_transaction_input_is_refused_and_writes_nothing(ledger: Ledger) -> None:
    # One test over all cases: they are checked before the database is touched, so a fresh
    # database per case would only cost time.
    _order(ledger, "o-1")
    tx_hash, raw = _signed(1)
    other_hash, _ = _signed(2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tx_hash": other_hash}, f"raw_tx hashes to {tx_hash}"),
        ({"raw_tx": raw[:-2]}, "raw_tx hashes to"),
        ({"raw_tx": "0x"}, "not a signed transaction"),
        ({"raw_tx": "02f872"}, "not a signed transaction"),
        ({"raw_tx": raw + "0"}, "not a signed transaction"),
        ({"raw_tx": 5}, "not a signed transaction"),
        ({"tx_hash": "0x1234"}, "not a transaction hash"),
        ({"max_priority_fee_per_gas": 31 * GWEI}, "exceeds max_fee_per_gas"),
        ({"max_fee_per_gas": 30.0 * GWEI}, "max_fee_per_gas must be an int"),
        ({"gas_limit": 0}, "gas_limit must be greater than 0"),
        ({"nonce": -1}, "nonce must be within"),
        ({"nonce": True}, "nonce must be an int"),
        ({"deadline": 2**63}, "deadline must be within"),
        ({"purpose": "mint"}, "purpose: 'mint' is not one of"),
        ({"order_client_id": None}, "a swap transaction belongs to an order"),
        ({"purpose": "approve", "order_client_id": None}, "approve transaction belongs"),
        ({"env": "staging"}, "env"),
        ({"wallet": "0xabc"}, "wallet"),
        ({"replaces_tx_hash": tx_hash}, "cannot replace itself"),
    ]
    for overrides, message in cases:
        fields = {**_tx_fields(1), **overrides}
        with pytest.raises((TypeError, ValueError), match=message):
            ledger.record_transaction(**fields)
    assert _count(ledger, TransactionRow) == 0


# -- state, decisions, errors, signals -------------------------------------------------


class _BotState(Enum):
    INIT = 1
    RUNNING = 2


def test_state_transitions_are_stored_in_order_with_reason_and_actor(ledger: Ledger) -> None:
    assert ledger.latest_state("test") is None
    ledger.record_transition("test", _BotState.INIT, _BotState.RUNNING, reason="start", actor="cli")
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    ledger.record_transition(
        "test", "RUNNING", "TRADING", reason="cycle", actor="flow:trading", created_at=at
    )
    ledger.record_transition("dev", "INIT", "RUNNING", reason="start", actor="cli")
    ledger.record_transition(
        "test", "TRADING", "ERROR", reason="chain id 1 != 31337", actor="flow:trading"
    )
    assert ledger.latest_state("test") == "ERROR"
    assert ledger.latest_state("dev") == "RUNNING"
    history = ledger.transitions("test")
    assert [(t.from_state, t.to_state, t.reason, t.actor) for t in history] == [
        ("INIT", "RUNNING", "start", "cli"),
        ("RUNNING", "TRADING", "cycle", "flow:trading"),
        ("TRADING", "ERROR", "chain id 1 != 31337", "flow:trading"),
    ]
    assert history[1].created_at == at
    assert all(t.created_at.tzinfo is not None for t in history)
    with pytest.raises(ValueError, match="reason"):
        ledger.record_transition("test", "ERROR", "RUNNING", reason=" ", actor="cli")
    assert ledger.latest_state("test") == "ERROR"


def test_risk_decisions_and_errors_keep_their_details(ledger: Ledger) -> None:
    details = {"limit": str(2**200), "asked": 5, "nested": {"venues": ["a", "b"]}}
    ledger.record_risk_decision(
        "o-9", approved=False, rule="max_trade_quote", reason="5 > 4", details=details
    )
    ledger.record_risk_decision("o-9", approved=True, rule="all", reason="within limits")
    ledger.record_error(
        "prod", error_kind_for(NetworkError("timeout")), "rpc", "read timed out",
        details={"endpoint": 2},
    )
    ledger.record_error("prod", "system", "executor", "gas balance too low")
    with pytest.raises(ValueError, match="kind"):
        ledger.record_error("prod", "fatal", "x", "y")
    with pytest.raises(TypeError, match="approved"):
        ledger.record_risk_decision("o-9", approved=1, rule="r", reason="x")  # type: ignore[arg-type]
    with ledger.session(write=False) as session:
        decisions = session.exec(select(RiskDecisionRow).order_by(col(RiskDecisionRow.id))).all()
        errors = session.exec(select(ErrorRow).order_by(col(ErrorRow.id))).all()
    assert [(d.approved, d.rule, d.details) for d in decisions] == [
        (False, "max_trade_quote", details), (True, "all", {}),
    ]
    assert [(e.kind, e.source, e.details) for e in errors] == [
        (ErrorKind.NETWORK, "rpc", {"endpoint": 2}), (ErrorKind.SYSTEM, "executor", {}),
    ]
    assert error_kind_for(ApiError("x")) is ErrorKind.API
    assert error_kind_for(ConfigError("x")) is ErrorKind.CONFIG
    assert error_kind_for(RuntimeError("x")) is ErrorKind.SYSTEM


def _signal(**overrides: Any) -> SignalRow:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    fields: dict[str, Any] = {
        "model": "ewma_spread", "pair": "WETH/USDC", "side": "buy", "edge_bps": 12.5,
        "confidence": 0.8, "horizon_s": 60, "inputs_from": start,
        "inputs_to": start + timedelta(minutes=30), "payload": {"z": 2.1},
    }
    fields.update(overrides)
    return SignalRow(**fields)


def test_signals_are_stored_in_bulk_all_or_nothing(ledger: Ledger) -> None:
    assert ledger.record_signals([_signal(), _signal(pair="WBTC/USDC", side="sell")]) == 2
    with pytest.raises(ValueError, match=r"signals\[1\]\.confidence"):
        ledger.record_signals([_signal(), _signal(confidence=1.5)])
    with pytest.raises(ValueError, match=r"signals\[0\]: inputs_from"):
        ledger.record_signals(
            [_signal(inputs_from=datetime(2026, 1, 2, tzinfo=UTC))]
        )
    with pytest.raises(ValueError, match="finite"):
        ledger.record_signals([_signal(edge_bps=float("nan"))])
    with ledger.session(write=False) as session:
        stored = session.exec(select(SignalRow).order_by(col(SignalRow.id))).all()
    assert [(s.pair, s.side, s.edge_bps, s.payload) for s in stored] == [
        ("WETH/USDC", "buy", 12.5, {"z": 2.1}), ("WBTC/USDC", "sell", 12.5, {"z": 2.1}),
    ]
    assert stored[0].inputs_to - stored[0].inputs_from == timedelta(minutes=30)


def test_times_are_utc_whatever_zone_they_came_in(ledger: Ledger) -> None:
    tokyo = timezone(timedelta(hours=9))
    taken = datetime(2026, 3, 1, 9, 0, tzinfo=tokyo)
    ledger.record_balance_snapshot(
        wallet=WALLET, token=USDC, amount=5, block_number=1, taken_at=taken
    )
    with ledger.session(write=False) as session:
        [row] = session.exec(select(BalanceSnapshotRow)).all()
    assert row.taken_at == taken
    assert row.taken_at.utcoffset() == timedelta(0)
    assert row.taken_at.hour == 0


def test_profit_sweeps(ledger: Ledger) -> None:
    ledger.record_profit_sweep(token=USDC, amount=2**100, to_address=COLD, tx_hash=TX_A)
    with pytest.raises(ValueError, match="to_address"):
        ledger.record_profit_sweep(token=USDC, amount=1, to_address="cold-wallet")
    with pytest.raises(IntegrityError), ledger.session() as session:
        from dexpilot.ledger import ProfitSweepRow

        session.add(ProfitSweepRow(token=USDC, amount=1, to_address=COLD, tx_hash=TX_A))


# -- backends --------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}", busy_timeout_s=7)
    try:
        assert path.parent.is_dir()
        ledger.upgrade()
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert Path(f"{path}-wal").exists()
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), ledger.session() as session:
            session.add(
                FillRow(order_id=999, token_in=WETH, token_out=USDC, amount_in=1, amount_out=1)
            )
    finally:
        ledger.dispose()


def test_unreachable_postgres_is_a_system_fault() -> None:
    port = _free_port()  # nothing listens here
    ledger = Ledger(f"postgresql://dexpilot:s3cret-pw@127.0.0.1:{port}/ledger")
    try:
        with pytest.raises(SystemFault, match=f"127.0.0.1:{port}.*unreachable") as raised:
            ledger.upgrade()
        assert "s3cret-pw" not in str(raised.value)
        with pytest.raises(SystemFault, match="unreachable"):
            ledger.pending_orders(WALLET)
        with pytest.raises(SystemFault, match="unreachable"):
            _order(ledger, "never")
    finally:
        ledger.dispose()


def test_unwritable_sqlite_directory_is_a_system_fault(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemFault, match="cannot create the ledger directory"):
        Ledger(f"sqlite:///{blocker}/ledger.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("not a url with p@ss", "not a database URL"),
        ("mysql://root:pw@localhost/db", "unsupported database"),
        ("sqlite+aiosqlite:///x.db", "unsupported database"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Ledger(url)
    assert "p@ss" not in str(raised.value) and ":pw@" not in str(raised.value)


def test_plain_postgresql_url_uses_psycopg_3() -> None:
    ledger = Ledger("postgresql://u:secret@db.example:5432/ledger")
    assert ledger.engine.dialect.driver == "psycopg"
    assert ledger.url == "postgresql+psycopg://u:***@db.example:5432/ledger"
    ledger.dispose()


# -- CLI and layering ------------------------------------------------------------------


def test_cli_upgrade_and_current(ledger_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(ledger_cli, ["current", "--url", ledger_url, "--check"])
    assert before.exit_code == 1
    assert f"current (empty), head {HEAD}" in before.output
    upgraded = runner.invoke(ledger_cli, ["upgrade", "--url", ledger_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at revision {HEAD}" in upgraded.output
    after = runner.invoke(ledger_cli, ["current", "--url", ledger_url, "--check"])
    assert after.exit_code == 0 and f"current {HEAD}, head {HEAD}" in after.output


def test_cli_reports_bad_and_unreachable_urls() -> None:
    runner = CliRunner()
    bad = runner.invoke(ledger_cli, ["upgrade", "--url", "mysql://x@y/z"])
    assert bad.exit_code == 2 and "unsupported database" in bad.output
    port = _free_port()
    down = runner.invoke(
        ledger_cli, ["current", "--url", f"postgresql://u:pw-123@127.0.0.1:{port}/d"]
    )
    assert down.exit_code == 1 and "unreachable" in down.output
    assert "pw-123" not in down.output


def test_ledger_never_imports_prefect() -> None:
    code = (
        "import sys, dexpilot.ledger, dexpilot_cli.ledger; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'); "
        "sys.exit(f'prefect imported: {bad}' if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr or result.stdout
