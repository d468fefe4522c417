"""`dexpilot backtest ...` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dexpilot.backtest import (
    Backtest,
    BacktestConfig,
    read_candles,
    summarise,
    synthetic,
    trades_table,
)

app = typer.Typer(no_args_is_help=True, help="backtest commands")


@app.command("run")
def run(
    candles: Annotated[Path, typer.Argument(help="Parquet or CSV file of candles")],
    quote: Annotated[str, typer.Option(help="quote token of every pair")] = "USDC",
    depth_quote: Annotated[int, typer.Option(help="quote-side pool depth, whole units")]
    = 2_000_000,
    fee_ppm: Annotated[int, typer.Option(help="LP fee in millionths")] = 3_000,
    gas_gwei: Annotated[int, typer.Option(help="gas price in gwei")] = 20,
    cost_bps: Annotated[float, typer.Option(help="round-trip costs the models must beat")]
    = 60.0,
    lookback: Annotated[int, typer.Option(help="candles each model fits on")] = 240,
    signal_every: Annotated[int, typer.Option(help="run the models every N candles")] = 1,
    trades: Annotated[int, typer.Option(help="trades to list")] = 20,
) -> None:
    """Replay CANDLES through the live strategy, router and risk engine; print the report."""
    console = Console()
    try:
        frame = read_candles(candles)
        config = BacktestConfig(quote=quote, depth_quote=depth_quote, fee_ppm=fee_ppm,
                                gas_price_wei=gas_gwei * 10**9, cost_bps=cost_bps,
                                lookback=lookback, signal_every=signal_every)
        engine = Backtest(frame, config)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    with Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        job = bar.add_task("replay", total=engine.n - engine.warmup)
        result = engine.run(lambda done, total: bar.update(job, completed=done, total=total))
    report = summarise(result)
    table = Table(title=f"backtest of {candles.name}: {', '.join(result.pairs)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.rows():
        table.add_row(name, value)
    console.print(table)
    rows = trades_table(result, trades)
    if rows:
        listing = Table(title=f"first {len(rows)} of {report.trade_count} trades")
        for column in rows[0]:
            listing.add_column(column)
        for row in rows:
            listing.add_row(*(str(v) for v in row.values()))
        console.print(listing)


@app.command("sample")
def sample(
    out: Annotated[Path, typer.Argument(help="where to write the Parquet (or .csv) file")],
    candles: Annotated[int, typer.Option(help="candles per pair")] = 2_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Write synthetic candles (a mean-reverting WETH/USDC, a random-walk WBTC/USDC)."""
    frame = synthetic.market({
        "WETH/USDC": synthetic.mean_reverting(candles, seed, vol=0.004),
        "WBTC/USDC": synthetic.random_walk(candles, seed + 1, start=60_000.0),
    })
    if out.suffix.lower() == ".csv":
        frame.write_csv(out)
    else:
        frame.write_parquet(out)
    typer.echo(f"wrote {frame.height} candles to {out}")
