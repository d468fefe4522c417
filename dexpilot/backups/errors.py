"""What can go wrong with a backup, as kinds of the project's error taxonomy."""

from __future__ import annotations

from dexpilot.errors import ConfigError, SystemFault


class BackupNotFound(ConfigError):
    """The operator named a backup that is not in the backup directory."""


class TargetNotEmpty(ConfigError):
    """A restore would overwrite a database that holds tables; it needs ``force``."""


class BackupCorrupted(SystemFault):
    """The backup file does not match its manifest (size or sha256), or the manifest is bad."""


class BackupFailed(SystemFault):
    """Taking, restoring or verifying a backup failed (database or tool error)."""


class VerifyMismatch(SystemFault):
    """A restored backup does not hold what its manifest says (row counts, digests, revision)."""
