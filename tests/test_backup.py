"""Ledger backups on SQLite and on a real PostgreSQL: round trips under concurrent writes,
retention, corruption, restore safety, the CLI and the backup flow on Prefect."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, func, select
from typer.testing import CliRunner

from dexpilot.backups import (
    BackupCorrupted,
    BackupManifest,
    BackupStore,
    TargetNotEmpty,
    VerifyMismatch,
    backups_to_keep,
    create_backup,
    restore_backup,
    verify_backup,
)
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.errors import ConfigError
from dexpilot.ledger import ErrorKind, ErrorRow, Ledger, OrderRow, TradeMode, head_revision
from dexpilot_cli.backup import app as backup_cli
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.prefect import PrefectServer

WALLET = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
WAIT_S = 60.0  # a bound for waits on the writer thread: exceeding it fails the test


# -- fixtures and helpers --------------------------------------------------------------------


@dataclass
class Databases:
    """An empty source database and a second empty one to restore into, on one backend."""

    backend: str
    source: str
    target: str


def _postgres_db(server: PostgresServer, names: list[str]) -> str:
    name = f"b_{uuid.uuid4().hex[:16]}"
    names.append(name)
    return server.create_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    if request.param == "sqlite":
        yield Databases("sqlite", f"sqlite:///{tmp_path}/ledger.db",
                        f"sqlite:///{tmp_path}/restored/ledger.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    names: list[str] = []
    try:
        yield Databases("postgresql", _postgres_db(server, names), _postgres_db(server, names))
    finally:
        for name in names:
            server.drop_database(name)


@pytest.fixture
def store(tmp_path: Path) -> BackupStore:
    return BackupStore(tmp_path / "backups")


def _ledger(url: str) -> Ledger:
    ledger = Ledger(url)
    ledger.upgrade()
    return ledger


def _order(ledger: Ledger, cid: str) -> OrderRow:
    return ledger.record_order(
        client_order_id=cid, env="test", wallet=WALLET, venue="uniswap-v2", token_in=WETH,
        token_out=USDC, amount_in=10**18 + len(cid), min_amount_out=2_990_000_000,
        expected_amount_out=3_000_000_000, mode=TradeMode.PAPER, strategy="test",
    )


def _seed(ledger: Ledger, n: int = 5) -> None:
    for i in range(n):
        _order(ledger, f"seed-{i}")
        ledger.record_error("test", ErrorKind.NETWORK, "seed", f"seed error {i}",
                            details={"i": i, "big": str(2**200)})


def _order_ids(url: str) -> set[str]:
    ledger = Ledger(url)
    try:
        with ledger.session(write=False) as session:
            return set(session.exec(select(OrderRow.client_order_id)).all())
    finally:
        ledger.dispose()


def _error_messages(url: str) -> set[str]:
    ledger = Ledger(url)
    try:
        with ledger.session(write=False) as session:
            return set(session.exec(select(ErrorRow.message)).all())
    finally:
        ledger.dispose()


def _count(url: str, model: type[SQLModel]) -> int:
    ledger = Ledger(url)
    try:
        with ledger.session(write=False) as session:
            return int(session.exec(select(func.count()).select_from(model)).one())
    finally:
        ledger.dispose()


@dataclass
class Writer:
    """A thread writing orders and errors through ``Ledger`` until told to stop.

    ``committed`` holds, in order, the index of every order whose ``record_order`` returned
    (committed), and ``errors_committed`` those whose error row committed too.
    """

    url: str
    committed: list[int] = field(default_factory=list)
    errors_committed: list[int] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        ledger = Ledger(self.url)
        try:
            i = 0
            while not self.stop.is_set():
                _order(ledger, f"w-{i}")
                with self.changed:
                    self.committed.append(i)
                    self.changed.notify_all()
                ledger.record_error("test", ErrorKind.API, "writer", f"w-{i}")
                with self.changed:
                    self.errors_committed.append(i)
                    self.changed.notify_all()
                i += 1
        except BaseException as exc:  # collected and asserted by the test
            self.failures.append(exc)
            with self.changed:
                self.changed.notify_all()
        finally:
            ledger.dispose()

    def wait_for(self, count: int) -> None:
        """Block until ``count`` orders are committed (fails the test after WAIT_S)."""
        with self.changed:
            done = self.changed.wait_for(
                lambda: len(self.committed) >= count or bool(self.failures), timeout=WAIT_S
            )
        assert not self.failures, self.failures
        assert done, f"the writer committed only {len(self.committed)} of {count} orders"

    def snapshot(self) -> tuple[set[int], set[int]]:
        with self.changed:
            return set(self.committed), set(self.errors_committed)


# -- round trips under concurrent writes -------------------------------------------------------


def test_backup_and_restore_lose_nothing_while_a_writer_runs(
    dbs: Databases, store: BackupStore
) -> None:
    ledger = _ledger(dbs.source)
    _seed(ledger)
    ledger.dispose()
    writer = Writer(dbs.source)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    during: set[int] = set()
    try:
        writer.wait_for(5)
        before_orders, before_errors = writer.snapshot()

        def while_snapshot_is_held() -> None:
            # The snapshot is taken and counted: the writer must not be blocked by it, and
            # what it commits now must not leak into this backup.
            at = len(writer.snapshot()[0])
            writer.wait_for(at + 5)
            during.update(writer.snapshot()[0] - set(range(at)))

        manifest = create_backup(dbs.source, store, on_snapshot=while_snapshot_is_held)
        writer.wait_for(len(writer.snapshot()[0]) + 3)  # still writing after the backup
    finally:
        writer.stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert writer.failures == []
    all_orders, all_errors = writer.snapshot()

    # The manifest describes the file: restore compares counts and contents with it.
    assert manifest.backend == dbs.backend
    assert manifest.alembic_revision == head_revision()
    verify_backup(store, manifest, server_url=dbs.source)
    restore_backup(store, manifest, dbs.target)
    restored = _order_ids(dbs.target)
    assert manifest.row_counts["orders"] == len(restored) == _count(dbs.target, OrderRow)
    assert manifest.row_counts["errors"] == _count(dbs.target, ErrorRow)

    # Everything committed before the backup started is in it; nothing committed while its
    # snapshot was held is; nothing in it was never committed.
    writer_ids = {int(cid[2:]) for cid in restored if cid.startswith("w-")}
    assert {f"seed-{i}" for i in range(5)} <= restored
    assert before_orders <= writer_ids
    assert during and not (during & writer_ids)
    assert writer_ids <= all_orders
    assert {f"w-{i}" for i in before_errors} <= _error_messages(dbs.target)

    # And the live database has every committed row: the backup lost nothing.
    live = _order_ids(dbs.source)
    assert {f"w-{i}" for i in all_orders} <= live
    assert {f"w-{i}" for i in all_errors} <= _error_messages(dbs.source)
    assert len(live) == 5 + len(all_orders)


def test_manifest_describes_the_file(dbs: Databases, store: BackupStore) -> None:
    ledger = _ledger(dbs.source)
    _seed(ledger, 3)
    ledger.dispose()
    manifest = create_backup(dbs.source, store)
    path = store.file_of(manifest)
    on_disk = json.loads((store.directory / f"{manifest.id}.json").read_text())
    assert on_disk["sha256"] == manifest.sha256
    assert on_disk["size_bytes"] == path.stat().st_size
    assert on_disk["backend"] == dbs.backend
    assert on_disk["alembic_revision"] == head_revision()
    assert on_disk["row_counts"]["orders"] == 3 and on_disk["row_counts"]["errors"] == 3
    assert on_disk["row_counts"]["alembic_version"] == 1
    created = datetime.fromisoformat(on_disk["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert manifest.id == f"ledger-{created.strftime('%Y%m%dT%H%M%S')}.{created.microsecond:06d}Z"
    assert path.name == manifest.id + (".sqlite" if dbs.backend == "sqlite" else ".pgdump")
    assert [m.id for m in store.list()] == [manifest.id]
    assert store.find(manifest.id) == store.find(str(path)) == manifest
    assert not list(store.directory.glob("*.partial"))


# -- corruption and restore safety -----------------------------------------------------------


def _backup_with_rows(dbs: Databases, store: BackupStore, n: int = 3) -> BackupManifest:
    ledger = _ledger(dbs.source)
    _seed(ledger, n)
    ledger.dispose()
    return create_backup(dbs.source, store)


def test_a_corrupted_backup_is_refused_and_changes_nothing(
    dbs: Databases, store: BackupStore
) -> None:
    manifest = _backup_with_rows(dbs, store)
    target = _ledger(dbs.target)
    _order(target, "keep-me")
    target.dispose()
    path = store.file_of(manifest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern, same size
    path.write_bytes(bytes(data))

    with pytest.raises(BackupCorrupted, match=r"sha256 .* nothing was changed"):
        restore_backup(store, manifest, dbs.target, force=True)
    with pytest.raises(BackupCorrupted, match="corrupted"):
        verify_backup(store, manifest, server_url=dbs.source)
    assert _order_ids(dbs.target) == {"keep-me"}

    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(BackupCorrupted, match="bytes, the manifest says"):
        restore_backup(store, manifest, dbs.target, force=True)
    assert _order_ids(dbs.target) == {"keep-me"}


def test_a_broken_manifest_is_refused(store: BackupStore, tmp_path: Path) -> None:
    dbs = Databases("sqlite", f"sqlite:///{tmp_path}/l.db", f"sqlite:///{tmp_path}/r.db")
    manifest = _backup_with_rows(dbs, store)
    (store.directory / f"{manifest.id}.json").write_text('{"id": "x"')
    with pytest.raises(BackupCorrupted, match="not a valid manifest"):
        store.find(manifest.id)
    with pytest.raises(BackupCorrupted):
        store.list()  # never read past: prune must not act on a directory it misreads


def test_verify_notices_a_backup_that_does_not_match_its_manifest(
    dbs: Databases, store: BackupStore
) -> None:
    manifest = _backup_with_rows(dbs, store)
    counts = dict(manifest.row_counts, orders=manifest.row_counts["orders"] + 1)
    digests = dict(manifest.table_digests, errors="0" * 64)
    lying = manifest.model_copy(update={"row_counts": counts, "table_digests": digests})
    with pytest.raises(VerifyMismatch) as caught:
        verify_backup(store, lying, server_url=dbs.source)
    assert "orders has 3 rows, manifest: 4" in str(caught.value)
    assert "errors: row contents differ" in str(caught.value)


def test_restore_refuses_a_non_empty_target_without_force(
    dbs: Databases, store: BackupStore
) -> None:
    manifest = _backup_with_rows(dbs, store)
    target = _ledger(dbs.target)
    _order(target, "other-1")
    _order(target, "other-2")
    target.dispose()

    with pytest.raises(TargetNotEmpty, match=r"not empty .* Pass --force"):
        restore_backup(store, manifest, dbs.target)
    assert _order_ids(dbs.target) == {"other-1", "other-2"}

    restore_backup(store, manifest, dbs.target, force=True)
    assert _order_ids(dbs.target) == {f"seed-{i}" for i in range(3)}
    assert _order_ids(dbs.target) == _order_ids(dbs.source)


def test_restore_refuses_the_other_backend(store: BackupStore, tmp_path: Path) -> None:
    dbs = Databases("sqlite", f"sqlite:///{tmp_path}/l.db", f"sqlite:///{tmp_path}/r.db")
    manifest = _backup_with_rows(dbs, store)
    with pytest.raises(ConfigError, match="sqlite backup; it cannot be restored into a post"):
        restore_backup(store, manifest, "postgresql://u@127.0.0.1:1/db")


# -- retention -------------------------------------------------------------------------------


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_retention_keeps_the_newest_of_each_recent_day() -> None:
    # Four backups a day from Mon 2024-01-01 to Wed 2024-01-10 (UTC).
    times = [_t(f"2024-01-{d:02d}T{h:02d}:00:00") for d in range(1, 11) for h in (0, 6, 12, 18)]
    kept = backups_to_keep(times, keep_daily=3, keep_weekly=0)
    assert kept == {_t("2024-01-10T18:00:00"), _t("2024-01-09T18:00:00"),
                    _t("2024-01-08T18:00:00")}


def test_retention_keeps_the_newest_of_each_recent_iso_week() -> None:
    # Daily at 02:00 from Mon 2024-01-01 to Tue 2024-02-06. ISO weeks start on Monday: the
    # newest of week 1 is Sun 01-07, of week 4 Sun 01-28, of week 5 Sun 02-04.
    times = [_t("2024-01-01T02:00:00") + timedelta(days=d) for d in range(37)]
    kept = backups_to_keep(times, keep_daily=2, keep_weekly=3)
    assert kept == {
        _t("2024-02-06T02:00:00"),  # daily (and the newest of week 6)
        _t("2024-02-05T02:00:00"),  # daily
        _t("2024-02-04T02:00:00"),  # weekly: week 5
        _t("2024-01-28T02:00:00"),  # weekly: week 4
    }
    assert backups_to_keep(times, keep_daily=0, keep_weekly=2) == {
        _t("2024-02-06T02:00:00"), _t("2024-02-04T02:00:00"),
    }


def test_retention_counts_days_with_backups_not_calendar_days() -> None:
    # The job stopped for a month: the last good backups are kept, not all deleted.
    times = [_t("2024-01-01T01:00:00"), _t("2024-01-02T01:00:00"), _t("2024-01-03T01:00:00"),
             _t("2024-02-15T01:00:00")]
    assert backups_to_keep(times, keep_daily=3, keep_weekly=0) == {
        _t("2024-02-15T01:00:00"), _t("2024-01-03T01:00:00"), _t("2024-01-02T01:00:00"),
    }


def test_retention_uses_utc_days_and_weeks() -> None:
    new_york = timezone(timedelta(hours=-5))
    late_sunday = datetime(2024, 1, 7, 22, 0, tzinfo=new_york)  # Mon 2024-01-08 03:00 UTC
    sunday = datetime(2024, 1, 7, 12, 0, tzinfo=UTC)
    assert backups_to_keep([late_sunday, sunday], keep_daily=2, keep_weekly=0) == {
        late_sunday, sunday,
    }
    # Different ISO weeks in UTC, so both are the newest of their week.
    assert backups_to_keep([late_sunday, sunday], keep_daily=0, keep_weekly=2) == {
        late_sunday, sunday,
    }
    assert backups_to_keep([], keep_daily=7, keep_weekly=4) == set()


@pytest.mark.parametrize(
    ("daily", "weekly", "message"),
    [(0, 0, "delete every backup"), (-1, 4, "keep_daily must be an int >= 0"),
     (7, True, "keep_weekly must be an int >= 0")],
)
def test_bad_retention_is_refused(daily: Any, weekly: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backups_to_keep([_t("2024-01-01T00:00:00")], keep_daily=daily, keep_weekly=weekly)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        backups_to_keep([datetime(2024, 1, 1)], keep_daily=1, keep_weekly=0)


def test_prune_deletes_exactly_the_backups_retention_drops(
    store: BackupStore, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    _seed(_ledger(url), 1)
    stamps = [_t("2024-01-01T02:00:00") + timedelta(hours=12 * i) for i in range(20)]
    made = {s: create_backup(url, store, now=lambda s=s: s) for s in stamps}
    expected = backups_to_keep(stamps, keep_daily=3, keep_weekly=2)
    result = store.prune(keep_daily=3, keep_weekly=2)
    assert {m.created_at for m in result.kept} == expected
    assert {m.created_at for m in result.deleted} == set(stamps) - expected
    left = sorted(p.name for p in store.directory.iterdir())
    assert left == sorted(
        n for s in expected for n in (made[s].file, f"{made[s].id}.json")
    )


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_create_list_verify_restore(dbs: Databases, tmp_path: Path) -> None:
    source = dbs.source
    if dbs.backend == "postgresql":  # trust auth ignores it; it must not show anywhere
        source = source.replace("postgres@", "postgres:s3cret-pw@")
    _seed(_ledger(source), 4)
    runner = CliRunner()
    directory = str(tmp_path / "cli-backups")
    common = ["--dir", directory]

    created = runner.invoke(backup_cli, ["create", "--url", source, *common])
    assert created.exit_code == 0, created.output
    manifest = BackupStore(directory).list()[0]
    assert manifest.id in created.output

    listed = runner.invoke(backup_cli, ["list", *common])
    assert listed.exit_code == 0, listed.output
    assert manifest.id in listed.output and dbs.backend in listed.output

    verified = runner.invoke(backup_cli, ["verify", manifest.id, "--url", source, *common])
    assert verified.exit_code == 0, verified.output
    assert "is good" in verified.output

    refused = runner.invoke(backup_cli, ["restore", manifest.id, "--url", source, *common])
    assert refused.exit_code == 2 and "--force" in refused.output

    restored = runner.invoke(backup_cli, ["restore", manifest.id, "--url", dbs.target, *common])
    assert restored.exit_code == 0, restored.output
    assert _order_ids(dbs.target) == {f"seed-{i}" for i in range(4)}

    missing = runner.invoke(backup_cli, ["verify", "ledger-19700101T000000.000000Z", *common])
    assert missing.exit_code == 2 and "no backup" in missing.output

    path = BackupStore(directory).file_of(manifest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    corrupted = runner.invoke(
        backup_cli, ["restore", str(path), "--url", dbs.target, "--force", *common]
    )
    assert corrupted.exit_code == 1 and "corrupted" in corrupted.output

    texts = [r.output for r in (created, listed, verified, refused, restored, corrupted)]
    texts.append((Path(directory) / f"{manifest.id}.json").read_text())
    assert not any("s3cret-pw" in text for text in texts)


def test_cli_empty_directory_and_bad_url(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(backup_cli, ["list", "--dir", str(tmp_path / "none")])
    assert empty.exit_code == 0 and "no backups" in empty.output
    bad = runner.invoke(backup_cli, ["create", "--url", "mysql://x@y/z", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "unsupported database" in bad.output
    gone = runner.invoke(
        backup_cli, ["create", "--url", f"sqlite:///{tmp_path}/nope.db", "--dir", str(tmp_path)]
    )
    assert gone.exit_code == 1 and "no SQLite ledger" in gone.output


# -- the flow --------------------------------------------------------------------------------


@pytest.mark.prefect
def test_backup_flow_creates_verifies_prunes_and_reports(
    prefect_server: PrefectServer, devnet: DevnetManifest, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client

    from dexpilot.metrics import process_metrics
    from flows.backup import backup
    from settings.blocks import push_settings

    devnet.write(tmp_path / "manifest.json")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", url)
    monkeypatch.setenv("DEXPILOT_HOT_WALLET_KEY", ANVIL_KEY_1)
    monkeypatch.delenv("DEXPILOT_PUSHGATEWAY_URL", raising=False)
    push_settings("test")
    _seed(_ledger(url), 2)
    directory = tmp_path / "flow-backups"

    first = backup(env="test", keep_daily=1, keep_weekly=1, directory=str(directory))
    _order(Ledger(url), "after-first")
    second = backup(env="test", keep_daily=1, keep_weekly=1, directory=str(directory))

    # Same UTC day and week: retention keeps only the newest.
    store = BackupStore(directory)
    assert [m.id for m in store.list()] == [second] and first != second
    assert store.list()[0].row_counts["orders"] == 3
    stamp = process_metrics().registry.get_sample_value(
        "dexpilot_last_successful_backup_timestamp_seconds"
    )
    assert stamp is not None and stamp >= store.list()[0].created_at.timestamp() - 1

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return next(str(a.data) for a in found if a.key == "ledger-backup-test")

    markdown = asyncio.run(artifact())
    assert second in markdown and "verified" in markdown and first in markdown
    assert "| orders | 3 |" in markdown

    with pytest.raises(ConfigError, match="delete every backup"):
        backup(env="test", keep_daily=0, keep_weekly=0, directory=str(directory))
    assert [m.id for m in store.list()] == [second]


def test_backups_never_import_prefect() -> None:
    code = (
        "import sys, dexpilot.backups, dexpilot_cli.backup; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'); "
        "sys.exit(f'prefect imported: {bad}' if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr or result.stdout
