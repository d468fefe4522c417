"""`dexpilot` command: one sub-command group per concern."""

from __future__ import annotations

import typer

from dexpilot.logs import setup_logging
from dexpilot_cli import (
    analysis,
    backtest,
    backup,
    demo,
    devnet,
    ledger,
    promote,
    settings,
    state,
    token,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="dexpilot: DEX trading bot")


@app.callback()
def _log_setup() -> None:
    # Every command logs through the one JSON setup with secrets masked; on stderr, since
    # stdout is the commands' own output (tables, JSON that scripts read).
    setup_logging(stream="stderr")


app.add_typer(devnet.app, name="devnet")
app.add_typer(settings.app, name="settings")
app.add_typer(ledger.app, name="ledger")
app.add_typer(state.app, name="state")
app.add_typer(token.app, name="token")
app.add_typer(analysis.app, name="analysis")
app.add_typer(backtest.app, name="backtest")
app.add_typer(backup.app, name="backup")
app.add_typer(promote.app, name="promote")
app.command(name="demo")(demo.demo)

if __name__ == "__main__":
    app()
