"""SQLite: SQLite's online backup API, inside one read transaction on the live ledger.

The ledger runs in WAL mode, so a read transaction is a snapshot that never blocks the bot's
writers. The counts, digests and revision are read in that transaction and the backup API copies
the pages of that same snapshot (``sqlite3_backup_step`` reuses the source connection's open
read transaction), so the manifest describes exactly the file. Writes committed while the copy
runs are neither lost (they are in the live database) nor half-included.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from dexpilot.backups.errors import BackupFailed, TargetNotEmpty
from dexpilot.backups.stats import TableStats, read_stats

BUSY_TIMEOUT_S = 30.0


def sqlite_path(database: str | None) -> Path:
    if database in (None, "", ":memory:") or database.startswith("file::memory:"):
        raise BackupFailed("an in-memory SQLite ledger cannot be backed up: it has no file")
    return Path(database).expanduser()


def user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def backup_sqlite(
    source: Path, partial: Path, on_snapshot: Callable[[], None] | None = None
) -> TableStats:
    """Copy ``source`` into ``partial`` (a new file, rollback-journal mode, fsynced)."""
    if not source.is_file():
        raise BackupFailed(f"no SQLite ledger at {source}")
    try:
        src = sqlite3.connect(source, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot open the SQLite ledger {source}: {exc}") from exc
    try:
        src.execute("BEGIN")  # deferred: the first read fixes the snapshot
        stats = read_stats(src.cursor(), user_tables(src))
        if on_snapshot is not None:
            on_snapshot()
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: the whole snapshot in one step
            # A self-contained file: no -wal/-shm beside it, nothing to checkpoint later.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupFailed(f"SQLite backup of {source} failed: {exc}") from exc
    finally:
        src.close()
    with partial.open("rb+") as handle:
        os.fsync(handle.fileno())
    return stats


def sqlite_stats(path: Path) -> TableStats:
    """Counts and digests of a restored database (opened normally: it may be in WAL mode)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("BEGIN")
        stats = read_stats(conn.cursor(), user_tables(conn))
        conn.execute("COMMIT")
        return stats
    finally:
        conn.close()


def restore_sqlite(backup: Path, target: Path, *, force: bool) -> None:
    """Replace the database at ``target`` with the backup, through the backup API.

    Through the API (not a file copy) so a target in WAL mode, or open by another process, stays
    a valid database: the copy happens under SQLite's own locks, in one step.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupFailed(f"cannot create {target.parent}: {exc.strerror}") from exc
    try:
        dst = sqlite3.connect(target, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot open the restore target {target}: {exc}") from exc
    try:
        existing = user_tables(dst)
        if existing and not force:
            raise TargetNotEmpty(
                f"restore target {target} is not empty (tables: {', '.join(existing)}); "
                "nothing was changed. Pass --force to overwrite it."
            )
        src = _open_readonly(backup)
        try:
            src.backup(dst)
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupFailed(f"restore into {target} failed: {exc}") from exc
    finally:
        dst.close()


def _open_readonly(path: Path) -> sqlite3.Connection:
    # immutable: the file is checked against its sha256 and never written, so SQLite needs no
    # locks and creates no -journal beside a stored backup.
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot open the backup {path}: {exc}") from exc
