"""Backup tasks: take, verify and prune ledger backups; record and publish the outcome.

No retries: a failed backup is reported (the flow run fails, the last-backup metric stays old
and its alert fires) rather than repeated against a database that is failing. Tasks take the
``AppConfig`` (never cached: ``NO_CACHE``), so the ledger URL's password is not put into a
cache key; everything shown is redacted.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dexpilot.backups import (
    BackupManifest,
    BackupStore,
    PruneResult,
    VerifyReport,
    create_backup,
    verify_backup,
)
from dexpilot.config import AppConfig
from dexpilot.metrics import process_metrics
from tasks.metrics import push_metrics

BACKUP_METRICS_JOB = "dexpilot-backup"


@task(cache_policy=NO_CACHE)
def take_backup(config: AppConfig, directory: Path) -> BackupManifest:
    manifest = create_backup(config.ledger.url, BackupStore(directory))
    get_run_logger().info(
        "backup %s: %d bytes, %d rows, revision %s, sha256 %s", manifest.id,
        manifest.size_bytes, manifest.total_rows, manifest.alembic_revision, manifest.sha256,
    )
    return manifest


@task(cache_policy=NO_CACHE)
def verify(config: AppConfig, directory: Path, manifest: BackupManifest) -> VerifyReport:
    """Restore into a scratch database (a temp SQLite file, or a scratch PostgreSQL database on
    the ledger's server) and compare counts, digests and revision with the manifest."""
    report = verify_backup(BackupStore(directory), manifest, server_url=config.ledger.url)
    get_run_logger().info("backup %s verified in %s", manifest.id, report.scratch)
    return report


@task(cache_policy=NO_CACHE)
def prune(directory: Path, keep_daily: int, keep_weekly: int) -> PruneResult:
    result = BackupStore(directory).prune(keep_daily=keep_daily, keep_weekly=keep_weekly)
    if result.deleted:
        get_run_logger().info("pruned %s", ", ".join(m.id for m in result.deleted))
    return result


@task(cache_policy=NO_CACHE)
def record_success(config: AppConfig) -> bool:
    """Set ``dexpilot_last_successful_backup_timestamp_seconds`` and push it (if configured)
    under its own Pushgateway job, so it never replaces the trading metrics' group."""
    process_metrics().backup_done()
    return push_metrics(config, BACKUP_METRICS_JOB)


@task(cache_policy=NO_CACHE)
def publish_report(config: AppConfig, directory: Path, manifest: BackupManifest,
                   report: VerifyReport, pruned: PruneResult) -> str:
    markdown = backup_markdown(config.env, directory, manifest, report, pruned)
    create_markdown_artifact(markdown=markdown, key=f"ledger-backup-{config.env}",
                             description=f"latest ledger backup of {config.env}")
    return markdown


def backup_markdown(env: str, directory: Path, manifest: BackupManifest, report: VerifyReport,
                    pruned: PruneResult) -> str:
    lines = [
        f"# Ledger backup `{env}`: **verified**", "",
        "| | |", "|---|---|",
        f"| backup | `{manifest.id}` |",
        f"| file | `{directory / manifest.file}` |",
        f"| created (UTC) | {manifest.created_at.strftime('%Y-%m-%d %H:%M:%S')} |",
        f"| backend | {manifest.backend} |",
        f"| source | `{manifest.source_url}` |",
        f"| size | {manifest.size_bytes:,} bytes |",
        f"| sha256 | `{manifest.sha256}` |",
        f"| alembic revision | {manifest.alembic_revision or '(none)'} |",
        f"| restore check | {report.scratch}: counts, digests and revision match |",
        "", "| table | rows |", "|---|---:|",
    ]
    lines += [f"| {table} | {count:,} |" for table, count in sorted(manifest.row_counts.items())]
    lines += ["", f"Retention kept {len(pruned.kept)} backup(s)"
              + (f", deleted {len(pruned.deleted)}: " + ", ".join(f"`{m.id}`" for m in
                                                                    pruned.deleted)
                 if pruned.deleted else ", deleted none") + "."]
    return "\n".join(lines) + "\n"
