"""Ledger backups: SQLite's online backup API or ``pg_dump -Fc``, a manifest per backup
(sha256, size, row counts and digests, alembic revision), retention, restore and a restore
check into a scratch database. No Prefect here: ``flows/backup.py`` and ``dexpilot backup`` call
these functions."""

from dexpilot.backups.core import (
    BACKUP_DIR_ENV,
    BackupStore,
    PruneResult,
    VerifyReport,
    create_backup,
    default_backup_dir,
    latest,
    restore_backup,
    verify_backup,
)
from dexpilot.backups.errors import (
    BackupCorrupted,
    BackupFailed,
    BackupNotFound,
    TargetNotEmpty,
    VerifyMismatch,
)
from dexpilot.backups.manifest import BackupManifest, backup_id
from dexpilot.backups.retention import backups_to_keep, check_retention
from dexpilot.backups.stats import TableStats

__all__ = [
    "BACKUP_DIR_ENV",
    "BackupCorrupted",
    "BackupFailed",
    "BackupManifest",
    "BackupNotFound",
    "BackupStore",
    "PruneResult",
    "TableStats",
    "TargetNotEmpty",
    "VerifyMismatch",
    "VerifyReport",
    "backup_id",
    "backups_to_keep",
    "check_retention",
    "create_backup",
    "default_backup_dir",
    "latest",
    "restore_backup",
    "verify_backup",
]
