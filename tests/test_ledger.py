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
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from typer.testing import CliRunner

from dexpilot.errors import ApiError, ConfigError, NetworkError, SystemFault
from dexpilot.ledger import (
    BalanceSnapshotRow,
    DuplicateOrder,
    ErrorKind,
    ErrorRow,
    FillRow,
    IllegalOrderTransition,
    Ledger,
    OrderRow,
    OrderStatus,
    RiskDecisionRow,
    SignalRow,
    TradeMode,
    UnknownOrder,
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
LEDGER_TABLES = {
    "orders", "fills", "balance_snapshots", "signals", "risk_decisions",
    "state_transitions", "errors", "profit_sweeps",
}


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


def _count(ledger: Ledger, model: type[SQLModel]) -> int:
    with ledger.session(write=False) as session:
        return len(session.exec(select(model)).all())


# -- migrations ------------------------------------------------------------------------


def test_upgrade_from_empty_reaches_head(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    try:
        assert ledger.current_revision() is None
        ledger.upgrade()
        assert ledger.current_revision() == head_revision() == "0001"
        assert ledger.is_at_head()
        tables = set(sa.inspect(ledger.engine).get_table_names())
        assert tables >= LEDGER_TABLES
        # Running it again is a no-op, not an error: deployments upgrade on every start.
        ledger.upgrade()
        assert ledger.current_revision() == "0001"
    finally:
        ledger.dispose()


def test_downgrade_to_base_removes_every_table(ledger: Ledger) -> None:
    from alembic import command

    from dexpilot.ledger import alembic_config

    config = alembic_config()
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(sa.inspect(ledger.engine).get_table_names()) & LEDGER_TABLES == set()


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
    assert "current (empty), head 0001" in before.output
    upgraded = runner.invoke(ledger_cli, ["upgrade", "--url", ledger_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "at revision 0001" in upgraded.output
    after = runner.invoke(ledger_cli, ["current", "--url", ledger_url, "--check"])
    assert after.exit_code == 0 and "current 0001, head 0001" in after.output


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
