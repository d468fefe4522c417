"""`dexpilot demo`: what `make run` shows on the embedded default."""

from __future__ import annotations

import typer

from dexpilot.chain import devnet
from dexpilot_cli.devnet import console, run_simulation, summary


def demo(
    seconds: float = typer.Option(5.0, min=0.1, help="how long the market simulator runs"),
) -> None:
    """Start the dev chain, let the market move for a while, and show the market."""
    with console.status("Starting the dev chain (first start deploys the market)..."):
        manifest, started = devnet.up()
    console.print(f"dev chain {'started' if started else 'already running'} at "
                  f"{manifest.rpc_url} (chain id {manifest.chain_id})")
    run_simulation(manifest, seconds=seconds)
    summary()
