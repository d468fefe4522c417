"""`dexpilot devnet up|down|status|simulate|summary`: the local dev chain with real Uniswap."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dexpilot.chain import devnet
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator, SimulatorParams
from dexpilot.errors import DexpilotError
from dexpilot.market.pools import MarketSnapshot
from dexpilot.market.spread import cross_venue_spreads
from dexpilot.money import format_units

app = typer.Typer(no_args_is_help=True, help="The local dev chain (anvil + real Uniswap V2/V3).")
console = Console()


def _running_manifest() -> DevnetManifest:
    current = devnet.running()
    if current is None:
        console.print("[red]The dev chain is not running.[/] Start it with `dexpilot devnet up`.")
        raise typer.Exit(1)
    return current[1]


@app.command()
def up() -> None:
    """Start the dev chain (deploying the market once, then from cache) and write the manifest."""
    with console.status("Starting the dev chain (first start deploys the market)..."):
        try:
            manifest, started = devnet.up()
        except DexpilotError as exc:
            console.print(f"[red]dev chain failed to start:[/] {exc}")
            raise typer.Exit(1) from exc
    verb = "started" if started else "already running"
    console.print(f"dev chain {verb}: [bold]{manifest.rpc_url}[/] (chain id {manifest.chain_id})")
    console.print(f"manifest: {devnet.devnet_dir() / 'manifest.json'}")
    try:
        claim_ledger(manifest)
    except DexpilotError as exc:
        console.print(f"[red]the dev ledger could not be set up:[/] {exc}")
        raise typer.Exit(1) from exc


def claim_ledger(manifest: DevnetManifest) -> None:
    """Keep the dev ledger on this dev chain instance: a new instance (a restart from the cached
    state knows none of the old chain's transactions) starts a new ledger; said in one line."""
    from dexpilot.execution.ledger_audit import claim_dev_ledger
    from settings.files import load_config

    url = load_config("dev").ledger.url
    # A manifest written before instances existed: its port is new at every start.
    instance = manifest.instance or f"{manifest.fingerprint}@{manifest.rpc_url}"
    with RpcClient([manifest.rpc_url]) as client:
        archived = claim_dev_ledger(url, client, env="dev", chain_id=manifest.chain_id,
                                    instance=instance, wallet=manifest.hot_wallet)
    if archived is not None:
        console.print(f"new dev chain instance, so a new dev ledger: the previous one is "
                      f"archived as {archived}", soft_wrap=True)


@app.command()
def down() -> None:
    """Stop the dev chain."""
    stopped = devnet.down()
    console.print("dev chain stopped" if stopped else "dev chain was not running")


@app.command()
def status() -> None:
    """Say whether the dev chain runs, where, and at which block."""
    manifest = _running_manifest()
    with RpcClient([manifest.rpc_url]) as client:
        block = int(client.request("eth_blockNumber"), 16)
    console.print(f"running: {manifest.rpc_url} chain id {manifest.chain_id}, block {block}, "
                  f"{len(manifest.pools)} pools on {len(manifest.venues)} venues")


@app.command()
def simulate(
    seconds: float = typer.Option(5.0, min=0.1, help="how long the noise traders trade"),
    seed: int = typer.Option(7, help="random seed of the price path"),
    step_seconds: int = typer.Option(0, min=0, help="advance chain time per step (0: real time)"),
) -> None:
    """Noise-trader swaps on every venue along a random price path."""
    manifest = _running_manifest()
    run_simulation(manifest, seconds=seconds, seed=seed, step_seconds=step_seconds or None)
    summary()


@app.command()
def summary() -> None:
    """Venues, pools, prices per venue and the spread between venues."""
    manifest = _running_manifest()
    with RpcClient([manifest.rpc_url]) as client:
        reader = ChainReader(client, manifest.multicall, expected_chain_id=manifest.chain_id)
        tokens = [t.token() for t in manifest.tokens]
        snapshot = reader.snapshot(manifest.pool_refs(), tokens, [manifest.hot_wallet])
    print_market(snapshot, manifest)


def run_simulation(
    manifest: DevnetManifest, *, seconds: float, seed: int = 7, step_seconds: int | None = None
) -> int:
    with RpcClient([manifest.rpc_url]) as client:
        sim = MarketSimulator(client, manifest, SimulatorParams(seed=seed,
                                                                step_seconds=step_seconds))
        with Progress(TextColumn("[bold]simulating market"), BarColumn(),
                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("sim", total=seconds, info="")
            start = time.monotonic()

            def on_step(report: object) -> None:
                progress.update(task, completed=min(time.monotonic() - start, seconds),
                                info=f"step {getattr(report, 'step', 0)}, "
                                     f"block {getattr(report, 'block', 0)}")

            steps = sim.run(seconds=seconds, on_step=on_step)
            progress.update(task, completed=seconds)
    return steps


def print_market(snapshot: MarketSnapshot, manifest: DevnetManifest) -> None:
    venues = Table(title=f"Venues (block {snapshot.block_number})")
    for col in ("venue", "kind", "router"):
        venues.add_column(col)
    for v in manifest.venues:
        venues.add_row(v.name, v.kind.value, v.router or "")
    console.print(venues)

    pools = Table(title="Pools: price of base in quote")
    pools.add_column("pair")
    pools.add_column("venue")
    pools.add_column("fee", justify="right")
    pools.add_column("price", justify="right")
    pools.add_column("pool")
    for snap in sorted(snapshot.pools, key=lambda s: (s.pool.pair, s.pool.venue)):
        address = snap.pool.address
        pools.add_row(snap.pool.pair, snap.pool.venue, f"{snap.pool.fee_ppm / 10_000:.2f} %",
                      f"{snap.price():,.6g}", f"{address[:8]}…{address[-4:]}")
    console.print(pools)

    spreads = Table(title="Cross-venue spread (buy cheapest, sell dearest)")
    for col in ("pair", "buy on", "sell on", "gross bps", "net of LP fees bps"):
        spreads.add_column(col)
    for s in cross_venue_spreads(snapshot.pools):
        spreads.add_row(s.pair, f"{s.cheapest.pool.venue} {s.cheapest.pool.fee_ppm // 100}bp",
                        f"{s.dearest.pool.venue} {s.dearest.pool.fee_ppm // 100}bp",
                        f"{s.gross_bps:.1f}", f"{s.net_of_fees_bps:.1f}")
    console.print(spreads)

    wallet = manifest.hot_wallet
    if (wallet, manifest.tokens[0].address) in snapshot.token_balances:
        balances = ", ".join(
            f"{format_units(snapshot.token_balances[(wallet, t.address)], t.decimals, 4)} "
            f"{t.symbol}" for t in manifest.tokens
        )
        native = format_units(snapshot.native_balances.get(wallet, 0), 18, 4)
        console.print(f"wallet A {wallet}: {balances}, {native} ETH for gas")
