"""Backup (seed: scheduled job -> backup storage): back up the ledger, check that the backup
restores, apply retention, record the time of the last good backup, publish a report.

Safe while the bot trades: SQLite is copied with its online backup API from one read snapshot,
PostgreSQL with ``pg_dump`` of an exported snapshot. Prune runs only after the new backup
restored correctly, so a broken backup never pushes a good one out.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dexpilot.backups import check_retention, default_backup_dir
from settings.blocks import load_settings
from tasks.backup import prune, publish_report, record_success, take_backup, verify
from tasks.run_logging import log_setup


@flow(name="backup", on_running=[log_setup])
def backup(env: str = "dev", keep_daily: int = 7, keep_weekly: int = 4,
           directory: str | None = None) -> str:
    """Back up ``env``'s ledger into ``directory`` (default ``$DEXPILOT_BACKUP_DIR`` or
    ``.devnet/backups/<env>``); keep ``keep_daily`` daily and ``keep_weekly`` weekly backups.
    Returns the new backup's id."""
    check_retention(keep_daily, keep_weekly)  # bad input: refused before anything is done
    config = load_settings(env)
    where = Path(directory) if directory else default_backup_dir(env)
    manifest = take_backup(config, where)
    report = verify(config, where, manifest)
    pruned = prune(where, keep_daily, keep_weekly)
    record_success(config)
    publish_report(config, where, manifest, report, pruned)
    return manifest.id


if __name__ == "__main__":
    backup()
