"""`dexpilot backup create|list|verify|restore`: ledger backups in a backup directory.

The ledger URL is ``--url`` (or ``$DEXPILOT_LEDGER_URL``), else the one in ``--env``'s settings
files; the directory is ``--dir`` (or ``$DEXPILOT_BACKUP_DIR``), else ``.devnet/backups/<env>``.
A BACKUP argument is a backup id (``ledger-20250102T030405.123456Z``) or the path of its file
or manifest. Bad input exits 2, any other failure 1; the message never shows a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from dexpilot.backups import (
    BackupManifest,
    BackupStore,
    create_backup,
    default_backup_dir,
    restore_backup,
    verify_backup,
)
from dexpilot.config import redact_url
from dexpilot.errors import ConfigError, DexpilotError

app = typer.Typer(no_args_is_help=True, help="Back up, list, verify and restore the ledger.")

EnvOpt = Annotated[str, typer.Option("--env", help="environment whose ledger and directory")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="DEXPILOT_LEDGER_URL", show_envvar=True,
                 help="ledger URL (default: the one in the environment's settings)"),
]
DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", envvar="DEXPILOT_BACKUP_DIR", show_envvar=True,
                 help="backup directory (default: .devnet/backups/<env>)"),
]
BackupArg = Annotated[str, typer.Argument(help="backup id, or the path of its file or manifest")]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(exc: DexpilotError) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(str(exc))}"
    )
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _url(env: str, url: str | None) -> str:
    if url:
        return url
    from settings.files import load_config

    return load_config(env).ledger.url


def _store(env: str, directory: Path | None) -> BackupStore:
    return BackupStore(directory if directory is not None else default_backup_dir(env))


def _summary(manifest: BackupManifest) -> str:
    return (f"{manifest.size_bytes:,} bytes, {manifest.total_rows:,} rows in "
            f"{len(manifest.row_counts)} tables, revision {manifest.alembic_revision or '-'}")


@app.command()
def create(env: EnvOpt = "dev", url: UrlOpt = None, directory: DirOpt = None) -> None:
    """Back up the ledger now (safe while the bot is trading)."""
    store = _store(env, directory)
    try:
        manifest = create_backup(_url(env, url), store)
    except DexpilotError as exc:
        _fail(exc)
    out = _out()
    out.print(f"backup [bold]{manifest.id}[/] of {escape(manifest.source_url)}")
    out.print(f"  file: {escape(str(store.file_of(manifest)))}")
    out.print(f"  {_summary(manifest)}")
    out.print(f"  sha256: {manifest.sha256}")


@app.command(name="list")
def list_(env: EnvOpt = "dev", directory: DirOpt = None) -> None:
    """List the backups in the directory, newest first."""
    store = _store(env, directory)
    try:
        manifests = store.list()
    except DexpilotError as exc:
        _fail(exc)
    out = _out()
    if not manifests:
        out.print(f"no backups in {escape(str(store.directory))}")
        return
    # Plain lines, not a table: ids stay whole (copy-pastable) at any terminal width.
    out.print(f"{len(manifests)} backup(s) in {escape(str(store.directory))}, newest first:")
    for m in manifests:
        out.print(f"  {m.id}  {m.created_at.strftime('%Y-%m-%d %H:%M:%S')} UTC  {m.backend}  "
                  f"{_summary(m)}")


@app.command()
def verify(backup: BackupArg, env: EnvOpt = "dev", url: UrlOpt = None,
           directory: DirOpt = None) -> None:
    """Check the file's sha256, restore it into a scratch database, compare with the manifest.

    A PostgreSQL backup is restored into a scratch database on the --url server (created and
    dropped; the user needs CREATEDB)."""
    store = _store(env, directory)
    try:
        manifest = store.find(backup)
        server = _url(env, url) if manifest.backend == "postgresql" else None
        report = verify_backup(store, manifest, server_url=server)
    except DexpilotError as exc:
        _fail(exc)
    _out().print(f"backup [bold]{manifest.id}[/] is good: sha256 matches, restored into "
                 f"{escape(report.scratch)} with the manifest's row counts, contents and "
                 f"revision ({_summary(manifest)})")


@app.command()
def restore(
    backup: BackupArg,
    env: EnvOpt = "dev",
    url: UrlOpt = None,
    directory: DirOpt = None,
    force: Annotated[bool, typer.Option("--force",
                                        help="overwrite a target database that is not empty")]
    = False,
) -> None:
    """Restore a backup into the ledger database (--url). Stop the bot first.

    The backup's sha256 is checked before anything is touched; a target that holds tables is
    refused unless --force."""
    store = _store(env, directory)
    try:
        manifest = store.find(backup)
        target = _url(env, url)
        restore_backup(store, manifest, target, force=force)
    except DexpilotError as exc:
        _fail(exc)
    _out().print(f"restored [bold]{manifest.id}[/] into {escape(redact_url(target))} "
                 f"({_summary(manifest)}); counts and contents match the manifest")
