"""Create, list, restore, verify and prune ledger backups in a backup directory.

A backup is two files in the directory: ``ledger-<UTC time>.sqlite`` (or ``.pgdump``) and its
manifest ``ledger-<UTC time>.json``. The data file is written under a ``.partial`` name, fsynced
and renamed; the manifest is written last, so a crash leaves at most an unlisted partial file.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL

from dexpilot.backups.errors import BackupFailed, BackupNotFound, VerifyMismatch
from dexpilot.backups.manifest import (
    EXTENSIONS,
    MANIFEST_SUFFIX,
    PARTIAL_SUFFIX,
    PREFIX,
    BackupManifest,
    backup_id,
    check_file,
    fsync_directory,
    manifest_path,
    read_manifest,
    sha256_file,
    write_atomically,
)
from dexpilot.backups.postgres import (
    PgTarget,
    backup_postgres,
    postgres_stats,
    restore_postgres,
    scratch_database,
)
from dexpilot.backups.retention import backups_to_keep
from dexpilot.backups.sqlite import (
    backup_sqlite,
    restore_sqlite,
    sqlite_path,
    sqlite_stats,
)
from dexpilot.backups.stats import TableStats, compare
from dexpilot.config import redact_url
from dexpilot.errors import ConfigError
from dexpilot.ledger.store import parse_ledger_url

BACKUP_DIR_ENV = "DEXPILOT_BACKUP_DIR"


def default_backup_dir(env: str) -> Path:
    """``$DEXPILOT_BACKUP_DIR``, else ``.devnet/backups/<env>`` (beside the dev ledger)."""
    configured = os.environ.get(BACKUP_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path(".devnet") / "backups" / env


def backend_of(url: URL) -> str:
    backend = url.get_backend_name()
    if backend not in EXTENSIONS:  # parse_ledger_url already refuses anything else
        raise ConfigError(f"no backup method for {backend} databases")
    return backend


@dataclass(frozen=True)
class PruneResult:
    kept: list[BackupManifest]
    deleted: list[BackupManifest]


@dataclass(frozen=True)
class VerifyReport:
    manifest: BackupManifest
    restored: TableStats
    scratch: str


class BackupStore:
    """A directory of backups. (A remote target: see docs/backups.md.)"""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).expanduser()

    def file_of(self, manifest: BackupManifest) -> Path:
        return self.directory / manifest.file

    def list(self) -> list[BackupManifest]:
        """Every complete backup, newest first; an unreadable manifest raises ``BackupCorrupted``
        (it is never skipped silently: prune must not reason about a directory it misreads)."""
        if not self.directory.is_dir():
            return []
        manifests = [
            read_manifest(path)
            for path in self.directory.glob(f"{PREFIX}*{MANIFEST_SUFFIX}")
            if path.is_file()
        ]
        return sorted(manifests, key=lambda m: m.created_at, reverse=True)

    def find(self, ref: str) -> BackupManifest:
        """A backup by id (``ledger-2025...Z``), by its file's or manifest's name or path."""
        name = Path(ref).name
        for suffix in (MANIFEST_SUFFIX, *EXTENSIONS.values()):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        directory = Path(ref).parent if Path(ref).parent != Path(".") else self.directory
        path = manifest_path(directory, name)
        if not path.is_file():
            raise BackupNotFound(f"no backup {ref!r} in {directory} (see `dexpilot backup list`)")
        return read_manifest(path)

    def delete(self, manifest: BackupManifest) -> None:
        # Manifest first: a crash in between leaves an unlisted data file, never a listed backup
        # without its data.
        manifest_path(self.directory, manifest.id).unlink(missing_ok=True)
        self.file_of(manifest).unlink(missing_ok=True)
        fsync_directory(self.directory)

    def prune(self, *, keep_daily: int, keep_weekly: int) -> PruneResult:
        manifests = self.list()
        keep = backups_to_keep(
            (m.created_at for m in manifests), keep_daily=keep_daily, keep_weekly=keep_weekly
        )
        kept = [m for m in manifests if m.created_at in keep]
        deleted = [m for m in manifests if m.created_at not in keep]
        for manifest in deleted:
            self.delete(manifest)
        return PruneResult(kept, deleted)


def create_backup(
    url: str,
    store: BackupStore,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_snapshot: Callable[[], None] | None = None,
) -> BackupManifest:
    """Back up the ledger at ``url`` into ``store``; safe while the bot writes.

    ``on_snapshot`` is called while the snapshot is held, after its counts were read and before
    its data is copied (tests use it to write concurrently at exactly that point).
    """
    parsed = parse_ledger_url(url)
    backend = backend_of(parsed)
    created = now()
    ident = backup_id(created)
    try:
        store.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupFailed(f"cannot create the backup directory {store.directory}: "
                           f"{exc.strerror}") from exc
    final = store.directory / f"{ident}{EXTENSIONS[backend]}"
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    if final.exists() or manifest_path(store.directory, ident).exists():
        raise BackupFailed(f"backup {ident} already exists in {store.directory}")
    try:
        if backend == "sqlite":
            stats = backup_sqlite(sqlite_path(parsed.database), partial, on_snapshot)
            tool = f"sqlite {sqlite3.sqlite_version} online backup API"
        else:
            stats, tool = backup_postgres(PgTarget(parsed), partial, on_snapshot)
        os.replace(partial, final)
        fsync_directory(store.directory)
    finally:
        partial.unlink(missing_ok=True)
    manifest = BackupManifest(
        id=ident,
        file=final.name,
        backend=backend,  # type: ignore[arg-type]  # checked by backend_of
        created_at=created,
        sha256=sha256_file(final),
        size_bytes=final.stat().st_size,
        alembic_revision=stats.revision,
        source_url=redact_url(parsed.render_as_string(hide_password=True)),
        row_counts=stats.row_counts,
        table_digests=stats.digests,
        tool=tool,
    )
    write_atomically(manifest_path(store.directory, ident), manifest.to_json().encode("utf-8"))
    return manifest


def restore_backup(
    store: BackupStore, manifest: BackupManifest, target_url: str, *, force: bool = False
) -> TableStats:
    """Restore a backup into ``target_url``, after checking its file against its manifest.

    A corrupted backup (``BackupCorrupted``) or a non-empty target without ``force``
    (``TargetNotEmpty``) changes nothing. Returns what the restored database holds, which must
    match the manifest (else ``VerifyMismatch``).
    """
    target = parse_ledger_url(target_url)
    backend = backend_of(target)
    if backend != manifest.backend:
        raise ConfigError(
            f"backup {manifest.id} is a {manifest.backend} backup; it cannot be restored into "
            f"a {backend} database"
        )
    path = store.file_of(manifest)
    check_file(manifest, path)
    if backend == "sqlite":
        db_path = sqlite_path(target.database)
        restore_sqlite(path, db_path, force=force)
        restored = sqlite_stats(db_path)
    else:
        pg = PgTarget(target)
        restore_postgres(path, pg, force=force)
        restored = postgres_stats(pg)
    _check_matches(manifest, restored, redact_url(target.render_as_string(hide_password=True)))
    return restored


def verify_backup(
    store: BackupStore, manifest: BackupManifest, server_url: str | None = None
) -> VerifyReport:
    """Restore into a scratch database and compare it with the manifest.

    SQLite: a temporary file. PostgreSQL: a database created on ``server_url``'s server (the
    user needs CREATEDB) and dropped afterwards, whatever happens.
    """
    check_file(manifest, store.file_of(manifest))
    if manifest.backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dexpilot-verify-") as scratch:
            path = Path(scratch) / "verify.db"
            restore_sqlite(store.file_of(manifest), path, force=False)
            restored = sqlite_stats(path)
            shown = f"scratch SQLite file {path}"
    else:
        if server_url is None:
            raise ConfigError(
                f"backup {manifest.id} is a PostgreSQL backup: verifying it needs a server to "
                "restore into (--url postgresql://user@host:port/db; a scratch database is "
                "created there and dropped)"
            )
        server = parse_ledger_url(server_url)
        if backend_of(server) != "postgresql":
            raise ConfigError("a PostgreSQL backup is verified on a PostgreSQL server")
        with scratch_database(PgTarget(server)) as scratch_pg:
            restore_postgres(store.file_of(manifest), scratch_pg, force=False)
            restored = postgres_stats(scratch_pg)
            shown = f"scratch database {scratch_pg.database} on {scratch_pg.shown}"
    _check_matches(manifest, restored, shown)
    return VerifyReport(manifest, restored, shown)


def _check_matches(manifest: BackupManifest, restored: TableStats, where: str) -> None:
    problems = compare(
        manifest.row_counts, manifest.table_digests, manifest.alembic_revision, restored
    )
    if problems:
        raise VerifyMismatch(
            f"backup {manifest.id} restored into {where} does not match its manifest: "
            + "; ".join(problems)
        )


def latest(manifests: Sequence[BackupManifest]) -> BackupManifest | None:
    return max(manifests, key=lambda m: m.created_at, default=None)

