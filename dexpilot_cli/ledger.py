"""`dexpilot ledger ...` commands: migrate a ledger database and show its revision."""

from __future__ import annotations

from typing import NoReturn

import typer

from dexpilot.errors import ConfigError, DexpilotError
from dexpilot.ledger import Ledger, head_revision

app = typer.Typer(no_args_is_help=True, help="ledger commands")

URL_OPTION = typer.Option(
    ...,
    "--url",
    envvar="DEXPILOT_LEDGER_URL",
    help="sqlite:///path/to/ledger.db or postgresql://user@host:port/dbname",
    show_envvar=True,
)


def _open(url: str) -> Ledger:
    try:
        return Ledger(url)
    except DexpilotError as exc:
        _fail(exc)


def _fail(exc: DexpilotError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    # 2 for bad input, 1 for everything else (database down, broken invariant).
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 1)


@app.command()
def upgrade(
    url: str = URL_OPTION,
    revision: str = typer.Option("head", help="target revision"),
) -> None:
    """Migrate the ledger database to REVISION (default: the newest)."""
    ledger = _open(url)
    try:
        ledger.upgrade(revision)
        typer.echo(f"{ledger.url}: at revision {ledger.current_revision()}")
    except DexpilotError as exc:
        _fail(exc)
    finally:
        ledger.dispose()


@app.command()
def current(
    url: str = URL_OPTION,
    check: bool = typer.Option(False, "--check", help="exit 1 unless the database is at head"),
) -> None:
    """Show the ledger database's migration revision and the newest one available."""
    ledger = _open(url)
    try:
        revision = ledger.current_revision()
    except DexpilotError as exc:
        _fail(exc)
    finally:
        ledger.dispose()
    head = head_revision()
    typer.echo(f"{ledger.url}: current {revision or '(empty)'}, head {head}")
    if check and revision != head:
        typer.echo("not at head: run `dexpilot ledger upgrade`", err=True)
        raise typer.Exit(1)


@app.command()
def archive(
    env: str = typer.Option(..., "--env", help="environment: dev, test or prod"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the new ledger)"),
) -> None:
    """Move ENV's SQLite ledger aside (ledger-<time>.db beside it) and start a new one.

    For a ledger that belongs to another chain (the start-up check says so): the old file is
    kept for the audit; the new ledger records who archived it and why. Stop the bot first.
    """
    from dexpilot.execution.ledger_audit import archive_ledger
    from dexpilot_cli.state import cli_actor
    from settings.files import load_config

    try:
        config = load_config(env)
        archived = archive_ledger(config.ledger.url, env=env, chain_id=config.chain.chain_id,
                                  actor=cli_actor(), reason=reason)
    except DexpilotError as exc:
        _fail(exc)
    typer.echo(f"{env} ledger archived to {archived}; the next start begins a new ledger")
