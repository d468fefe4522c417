"""`dexpilot demo`: what `make run` shows on the embedded default.

The dev chain with real Uniswap, noise traders moving prices in the background, and the
`trading-session` flow running on local Prefect against the `dev` settings block for a
bounded number of cycles; then a summary of what the bot did.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from dexpilot.chain import devnet
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator, SimulatorParams
from dexpilot.errors import ApiError, ConfigError, DexpilotError, NetworkError
from dexpilot.execution.ledger_audit import LedgerChainMismatch
from dexpilot.market.valuation import quote_prices
from dexpilot.money import format_units
from dexpilot.trading.cycle import CycleReport
from dexpilot.trading.session import CYCLE_LISTENERS
from dexpilot_cli.devnet import claim_ledger, console, print_market

log = logging.getLogger("dexpilot.demo")  # under the "dexpilot" logger: into the log file


def _wallet_value(client: RpcClient, manifest: DevnetManifest,
                  prices: dict[str, float] | None = None) -> tuple[float, dict[str, float]]:
    reader = ChainReader(client, manifest.multicall, expected_chain_id=manifest.chain_id)
    tokens = [t.token() for t in manifest.tokens]
    snap = reader.snapshot(manifest.pool_refs(), tokens, [manifest.hot_wallet])
    usdc = next(t for t in tokens if t.symbol == "USDC")
    weth = next(t for t in tokens if t.symbol == manifest.weth)
    prices = prices or quote_prices(snap, usdc, weth)
    value = sum(snap.balance(manifest.hot_wallet, t) / 10**t.decimals * prices.get(t.symbol, 0)
                for t in tokens)
    value += snap.native_balances[manifest.hot_wallet] / 10**18 * prices[weth.symbol]
    return value, prices


def demo(
    cycles: int = typer.Option(10, min=1, help="trading cycles to run"),
    interval: float = typer.Option(1.0, min=0.0, help="seconds between cycles"),
    seed: int = typer.Option(7, help="random seed of the simulated market"),
    monitoring: bool = typer.Option(False, "--monitoring",
                                    help="also run Prometheus + Pushgateway on loopback"),
) -> None:
    """Dev chain + market simulator + a bounded trading session, then a summary."""
    # `make run` is a newcomer's first command: whatever fails, it ends in one paragraph that
    # names the cause and the next command, never in a traceback (that goes to the log file).
    try:
        _run(cycles, interval, seed, monitoring)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        console.print("interrupted; the dev chain keeps running (`dexpilot devnet down` stops it)")
        raise typer.Exit(130) from None
    except Exception as exc:  # see above: every failure becomes a message
        # The traceback only into a log file: on a console it would bury the message.
        log.error("demo failed: %s", exc, exc_info=bool(os.environ.get("DEXPILOT_LOG_FILE")))
        console.print(_failure_message(exc), soft_wrap=True)
        raise typer.Exit(1) from None


def _failure_message(exc: Exception) -> str:
    text = escape(str(exc))  # a message is not markup: "[...]" in it must print as it is
    log_file = os.environ.get("DEXPILOT_LOG_FILE")
    details = f" Details are in {log_file}." if log_file else ""
    restart = "`dexpilot devnet down`, then `make run` (a new dev chain starts a new dev ledger)"
    if isinstance(exc, LedgerChainMismatch):
        return f"[red]The dev ledger does not belong to this dev chain.[/] {text}{details}"
    if isinstance(exc, ConfigError):
        return (f"[red]The dev settings are not usable:[/] {text} Fix them, check with "
                f"`dexpilot settings check dev`, then `make run` again.{details}")
    if isinstance(exc, NetworkError | ApiError):
        return (f"[red]The dev chain does not answer as it should:[/] {text} Restart it: "
                f"{restart}.{details}")
    if isinstance(exc, DexpilotError):
        # Most faults already name their command (`npm ci`, `dexpilot devnet up`, ...).
        then = "" if "`" in text else f" Next: {restart}."
        return f"[red]The demo stopped:[/] {text}{then}{details}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (f"[red]A port the demo needs is in use:[/] {text}. Stop what holds it (e.g. an "
                f"earlier `make run MONITORING=1` still open), then `make run` again.{details}")
    return (f"[red]The demo failed unexpectedly:[/] {type(exc).__name__}: {text}. Next: "
            f"{restart}; if it fails again, report it with the log.{details}")


def _run(cycles: int, interval: float, seed: int, monitoring: bool) -> None:
    if os.environ.get("DEXPILOT_LOG_FILE"):
        # The log goes to a file (`make run`): keep Prefect's console handler (root logger)
        # from printing tracebacks over the progress bar; the flow runs' logs stay in Prefect.
        # Read by Prefect when it is imported, just below.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from flows.trading_session import trading_session
    from settings.blocks import push_settings

    if monitoring:
        _start_monitoring()

    with console.status("Starting the dev chain (first start deploys the market)..."):
        manifest, started = devnet.up()
    console.print(f"dev chain {'started' if started else 'already running'} at "
                  f"{manifest.rpc_url} (chain id {manifest.chain_id})")
    claim_ledger(manifest)
    state, reason = _bot_state()
    if state in ("ERROR", "STOPPED"):
        console.print(_stuck_message(state, reason), soft_wrap=True)
        raise typer.Exit(1)
    with console.status("Pushing the dev settings to Prefect (local server)..."):
        try:
            pushed = push_settings("dev")
        except DexpilotError as exc:
            console.print(f"[red]dev settings are not usable:[/] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"settings block 'dev' saved ({pushed.block.config.strategy.mode} mode)")

    client = RpcClient([manifest.rpc_url])
    value_before, prices = _wallet_value(client, manifest)
    stop = threading.Event()
    sim = MarketSimulator(RpcClient([manifest.rpc_url]), manifest,
                          SimulatorParams(seed=seed, venue_noise=0.006))

    def trade_noise() -> None:
        # Other traders move the market about once per cycle; faster noise mostly makes the
        # bot's bounded swaps refuse (they do, and it is recorded).
        while not stop.wait(max(interval, 0.2)):
            sim.step()

    noise = threading.Thread(target=trade_noise, name="market-simulator", daemon=True)
    with Progress(TextColumn("[bold]trading session"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), console=console) as progress:
        bar = progress.add_task("cycles", total=cycles, info="starting Prefect...")
        filled = 0

        def on_cycle(report: CycleReport) -> None:
            nonlocal filled
            filled += sum(1 for e in report.executions if e.filled)
            progress.update(bar, advance=1,
                            info=f"block {report.block_number}, {filled} fills")

        CYCLE_LISTENERS.append(on_cycle)
        noise.start()
        try:
            summary = trading_session(env="dev", max_cycles=cycles, interval_s=interval)
        finally:
            stop.set()
            noise.join(timeout=10)
            CYCLE_LISTENERS.remove(on_cycle)
    value_after, _ = _wallet_value(client, manifest, prices)
    _print_summary(summary, value_after - value_before)
    state, reason = _bot_state()
    console.print(f"final state: [bold]{state}[/]")
    reader = ChainReader(client, manifest.multicall, expected_chain_id=manifest.chain_id)
    print_market(reader.snapshot(manifest.pool_refs(), [t.token() for t in manifest.tokens],
                                 [manifest.hot_wallet]), manifest)
    if monitoring and sys.stdin.isatty():
        typer.prompt("Prometheus keeps running for a look; press Enter to stop it",
                      default="", show_default=False)
    if state in ("ERROR", "STOPPED"):
        console.print(_stuck_message(state, reason), soft_wrap=True)
        raise typer.Exit(1)


def _stuck_message(state: str, reason: str) -> str:
    return (f"[red]The bot is {state}[/] ({escape(reason)}), so it does not trade. See "
            "`dexpilot state show --env dev`; once the cause is fixed, "
            "`dexpilot state resume --env dev --reason \"...\"` lets it trade again, or "
            "`dexpilot devnet down` then `make run` starts over on a new dev chain and ledger.")


def _start_monitoring() -> None:
    """Prometheus + Pushgateway beside the demo (the test fixtures' code); the session pushes
    to it through ``DEXPILOT_PUSHGATEWAY_URL``. They stop when the demo exits."""
    import atexit
    import os

    from deployments.monitoring.local import start_stack

    with console.status("Starting Prometheus and the Pushgateway on loopback..."):
        stack = start_stack(interval="2s")
    atexit.register(stack.stop)
    os.environ["DEXPILOT_PUSHGATEWAY_URL"] = stack.pushgateway_url
    console.print(f"Prometheus: [bold]{stack.prometheus_url}[/]  (Pushgateway "
                  f"{stack.pushgateway_url}; try the query dexpilot_bot_state)")


def _print_summary(summary: dict[str, object], pnl_usdc: float) -> None:
    table = Table(title="Trading session")
    table.add_column("what")
    table.add_column("value", justify="right")
    rejected = summary.get("rejected") or {}
    assert isinstance(rejected, dict)
    rows = [
        ("cycles", summary["cycles"]), ("signals", summary["signals"]),
        ("orders sent", summary["orders"]), ("filled", summary["filled"]),
        ("failed", summary["failed"]),
        ("rejected", ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) or "none"),
        ("gas", f"{format_units(int(str(summary['gas_cost_wei'])), 18, 6)} ETH"),
        ("PnL (wallet A, at start prices, gas included)", f"{pnl_usdc:,.2f} USDC"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    console.print(table)


def _bot_state() -> tuple[str, str]:
    """The dev bot's state and the reason of its last transition."""
    from dexpilot.ledger import Ledger
    from dexpilot.state import BotStateMachine, LedgerTransitionStore
    from settings.files import load_config

    config = load_config("dev")
    ledger = Ledger(config.ledger.url)
    try:
        ledger.upgrade()  # a ledger not created yet is a new bot (INIT), not an error
        state = BotStateMachine(LedgerTransitionStore(ledger), "dev").state.value
        transitions = ledger.transitions("dev")
        return state, transitions[-1].reason if transitions else "no transition yet"
    finally:
        ledger.dispose()
