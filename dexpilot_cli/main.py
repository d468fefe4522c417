"""`dexpilot` command: one sub-command group per concern."""

from __future__ import annotations

import typer

from dexpilot_cli import analysis, backtest, backup, demo, devnet, ledger, promote, settings, state

app = typer.Typer(no_args_is_help=True, add_completion=False, help="dexpilot: DEX trading bot")
app.add_typer(devnet.app, name="devnet")
app.add_typer(settings.app, name="settings")
app.add_typer(ledger.app, name="ledger")
app.add_typer(state.app, name="state")
app.add_typer(analysis.app, name="analysis")
app.add_typer(backtest.app, name="backtest")
app.add_typer(backup.app, name="backup")
app.add_typer(promote.app, name="promote")
app.command(name="demo")(demo.demo)

if __name__ == "__main__":
    app()
