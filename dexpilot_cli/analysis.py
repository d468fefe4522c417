"""`dexpilot analysis ...` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dexpilot.analysis.models import analyse, default_models, pairs_models
from dexpilot.analysis.models.report import signals_table
from dexpilot.backtest import read_candles

app = typer.Typer(no_args_is_help=True, help="analysis commands")


@app.command("run")
def run(
    candles: Annotated[Path, typer.Argument(help="Parquet or CSV file of candles")],
    cost_bps: Annotated[float, typer.Option(help="round-trip costs the models must beat")]
    = 60.0,
    lookback: Annotated[int, typer.Option(help="candles each model fits on")] = 240,
    pair_trade: Annotated[list[str] | None, typer.Option(
        help="Y~X: run the pairs model on two pairs (repeatable)")] = None,
) -> None:
    """Run the models on the last LOOKBACK candles of every pair in CANDLES (nothing stored)."""
    console = Console()
    try:
        frame = read_candles(candles)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    trades = []
    for text in pair_trade or []:
        y, sep, x = text.partition("~")
        if not sep or not x:
            console.print(f"[red]error:[/red] --pair-trade {text!r} is not like "
                          "WETH/USDC~WBTC/USDC")
            raise typer.Exit(2)
        trades.append((y, x))
    result = analyse(frame, [*default_models(cost_bps=cost_bps, lookback=lookback),
                             *pairs_models(trades, cost_bps=cost_bps, lookback=lookback)])
    rows = signals_table(result)
    table = Table(title=f"{len(result.signals)} signal(s) from {candles.name}")
    for column in ("pair", "model", "side", "edge_bps", "confidence", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("pair", "model", "side", "edge_bps",
                                              "confidence", "note")))
    console.print(table)
