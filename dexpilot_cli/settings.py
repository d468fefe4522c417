"""`dexpilot settings ...` commands: check, push and show one environment's settings.

``check`` validates files, ``.env``, the manifest, the hot-wallet key and every RPC chain id
and writes nothing; ``check --chain`` also checks every configured contract against the chain
(code, token decimals and symbols, pool pairs, venue factories). ``push`` runs the same checks
and then saves the environment's Prefect block. ``show`` prints what the block holds. The
hot-wallet key is never printed; URLs are shown without credentials or paths. Any problem: the
message on stderr and exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dexpilot.config import AppConfig, redact_url
from dexpilot.errors import DexpilotError
from dexpilot.money import format_units
from settings.checks import CheckReport, check_environment
from settings.files import redact_secrets

app = typer.Typer(no_args_is_help=True, help="Check, push and show environment settings.")

T = TypeVar("T")

EnvArg = Annotated[str, typer.Argument(help="environment: dev, test or prod", show_default=False)]
RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="project root holding settings/ and .env (default: this repo)"),
]
SkipRpcOpt = Annotated[
    bool, typer.Option("--skip-rpc", help="do not ask the RPC endpoints for their chain id")
]
SkipKeyOpt = Annotated[
    bool, typer.Option("--skip-key", help="do not look for the hot-wallet key (e.g. in CI)")
]
ChainOpt = Annotated[
    bool, typer.Option("--chain", help="also check every configured token, pool, router, "
                                       "quoter, factory and the multicall against the chain")
]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(redact_secrets(message))}"
    )
    return typer.Exit(code=1)


def _run(fn: Callable[[], T], *, what: str) -> T:
    try:
        return fn()
    except DexpilotError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # Prefect API unreachable and the like: no traceback, no secrets
        raise _fail(f"{what} failed: {type(exc).__name__}: {exc}") from None


@app.command()
def check(env: EnvArg, root: RootOpt = None, skip_rpc: SkipRpcOpt = False,
          skip_key: SkipKeyOpt = False, chain: ChainOpt = False) -> None:
    """Validate ENV's settings (files, .env, manifest, key, RPC chain ids; with --chain the
    contracts on the chain too); write nothing."""
    if chain and skip_rpc:
        raise _fail("--chain needs the RPC endpoints: drop --skip-rpc")
    report = _run(
        lambda: check_environment(env, root=root, rpc=not skip_rpc, key=not skip_key,
                                  chain=chain),
        what="check",
    )
    out = _out()
    _print_report(out, report)
    out.print(f"[bold green]ok[/]: settings for {escape(env)!r} are valid (nothing was written)")


@app.command()
def push(env: EnvArg, root: RootOpt = None, skip_rpc: SkipRpcOpt = False,
         skip_key: SkipKeyOpt = False,
         store_key: Annotated[bool, typer.Option(
             "--store-key",
             help="also store the hot-wallet key in the block (a masked SecretStr field); by "
                  "default it stays in the environment or its Secret block")] = False) -> None:
    """Check ENV's settings, then save them as the Prefect block named ENV (overwriting it)."""
    from settings.blocks import BLOCK_TYPE_SLUG, push_settings

    result = _run(
        lambda: push_settings(env, root=root, store_key=store_key, rpc=not skip_rpc,
                              key=not skip_key),
        what="push",
    )
    out = _out()
    _print_report(out, result.report)
    key_note = (
        "the hot-wallet key is stored in the block (masked)" if result.block.hot_wallet_key
        else "the hot-wallet key is not stored in the block"
    )
    out.print(
        f"[bold green]saved[/]: Prefect block {BLOCK_TYPE_SLUG}/{escape(env)} "
        f"(pushed at {result.block.pushed_at}); {key_note}"
    )


@app.command()
def show(env: EnvArg,
         as_json: Annotated[bool, typer.Option("--json", help="print the config as JSON")] = False,
         ) -> None:
    """Print ENV's settings as saved in its Prefect block (secrets masked)."""
    from settings.blocks import BLOCK_TYPE_SLUG, load_environment

    block = _run(lambda: load_environment(env), what="show")
    out = _out()
    if as_json:
        out.print_json(data=_masked_dump(block.config))
        return
    out.print(f"[bold]Prefect block {BLOCK_TYPE_SLUG}/{escape(env)}[/] "
              f"(pushed at {block.pushed_at or 'unknown'})")
    out.print("  sources: " + escape(", ".join(block.sources) or "unknown"))
    out.print("  hot-wallet key: " + ("stored in the block (**********)" if block.hot_wallet_key
                                      else "not stored in the block"))
    _print_config(out, block.config)


# -- rendering -------------------------------------------------------------------------------------
def _print_report(out: Console, report: CheckReport) -> None:
    loaded = report.loaded
    out.print(f"[bold]settings {escape(loaded.env)}[/]: " + escape(", ".join(loaded.sources)))
    _print_config(out, report.config)
    if report.key is not None:
        out.print(f"  hot-wallet key: ********** from {escape(report.key.source)}, "
                  f"matches wallet A {report.key.address}")
    for url, chain_id in report.rpc_chain_ids:
        out.print(f"  rpc {escape(redact_url(url))}: chain {chain_id} (as configured)")
    if report.chain_audit is not None:
        out.print(f"  chain: every contract matches the config "
                  f"({escape(report.chain_audit.summary())})")
    for skipped in report.skipped:
        out.print(f"  [yellow]skipped[/]: {escape(skipped)} check")
    for warning in loaded.warnings:
        out.print(f"  [yellow]warning[/]: {escape(warning)}")


def _print_config(out: Console, config: AppConfig) -> None:
    quote = config.token(config.strategy.quote_token)

    def q(raw: int) -> str:
        return f"{format_units(raw, quote.decimals)} {quote.symbol}"

    table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()

    def row(name: str, text: str) -> None:
        table.add_row(name, escape(text))

    c = config.chain
    row("chain", f"id {c.chain_id}; rpc " + ", ".join(redact_url(u) for u in c.rpc_urls))
    row("tokens", ", ".join(f"{t.symbol} ({t.decimals})" for t in config.tokens))
    row("venues", ", ".join(
        f"{v.name} ({v.kind.value}{'' if v.enabled else ', disabled'})" for v in config.venues))
    row("pools", f"{len(config.pools)}: " + ", ".join(
        f"{p.venue} {p.token0}/{p.token1}" + (f" {p.fee_ppm / 10_000:g}%" if p.kind == "v3" else "")
        for p in config.pools))
    w = config.wallets
    key_ref = f"env {w.hot_key_env}" + (
        f" or Secret block {w.hot_key_secret_block}" if w.hot_key_secret_block else "")
    row("wallets", f"A (hot) {w.hot}, key from {key_ref}; B (cold) {w.cold}")
    r = config.risk
    row("risk", f"max trade {q(r.max_trade_quote)}; daily volume "
                  f"{q(r.max_daily_volume_quote)}; working capital {q(r.working_capital_quote)}; "
                  f"daily loss {q(r.daily_loss_limit_quote)}")
    row("", f"exposure {q(r.max_exposure_per_token_quote)} per token, "
                  f"{q(r.max_total_exposure_quote)} total; slippage {r.max_slippage_bps} bps; "
                  f"price impact {r.warn_price_impact_bps}/{r.max_price_impact_bps} bps")
    row("", "allowlist " + ", ".join(r.token_allowlist))
    s = config.strategy
    row("strategy", f"{s.name} ({s.mode}), quote {s.quote_token}, "
                  f"every {s.cycle_interval_s:g} s")
    row("ledger", redact_url(config.ledger.url))
    m = config.metrics
    row("metrics", ", ".join(filter(None, [
        f"pushgateway {redact_url(m.pushgateway_url)}" if m.pushgateway_url else None,
        f"listen :{m.listen_port}" if m.listen_port else None])) or "off")
    out.print(table)


def _masked_dump(config: AppConfig) -> dict[str, object]:
    data = config.model_dump(mode="json")
    data["chain"]["rpc_urls"] = [redact_url(u) for u in config.chain.rpc_urls]
    data["ledger"]["url"] = redact_url(config.ledger.url)
    if config.metrics.pushgateway_url:
        data["metrics"]["pushgateway_url"] = redact_url(config.metrics.pushgateway_url)
    return data
