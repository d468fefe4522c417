"""`dexpilot token list|clear`: the tokens the bot will not buy, and an operator's release.

A token is quarantined by the bot itself: a fill that delivered less than ``amountOutMin`` (the
token took a cut on transfer) or a token whose reads fail. It is never released by the bot:
``clear`` is an operator's decision, stored with actor ``cli:<os user>`` and ``--reason``, and
logged. ``list`` also shows the latest token-safety verdict of every configured token.
Any problem: the message on stderr and exit code 1.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dexpilot.config import TokenConfig
from dexpilot.errors import DexpilotError
from dexpilot.ledger import TokenQuarantineRow, TokenVerdictRow
from dexpilot_cli.state import EnvOpt, _fail, _ledger, _out, cli_actor

app = typer.Typer(no_args_is_help=True, help="Quarantined tokens and token-safety verdicts.")
log = logging.getLogger("dexpilot.token")
TokenArg = Annotated[str, typer.Argument(help="token symbol (as configured) or address")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="why it may be bought again", show_default=False)
]


@app.command("list")
def list_tokens(env: EnvOpt = "dev") -> None:
    """Quarantined tokens, then the latest safety verdict of each configured token."""
    from settings.files import load_config

    config = load_config(env)
    ledger = _ledger(env)
    quarantined: list[TokenQuarantineRow] = []
    verdicts: list[tuple[TokenConfig, TokenVerdictRow | None]] = []
    try:
        if ledger.current_revision() is not None:
            quarantined = ledger.active_quarantines(env)
            verdicts = [(t, ledger.latest_token_verdict(env, t.address)) for t in config.tokens]
    except DexpilotError as exc:
        _fail(str(exc))
    finally:
        ledger.dispose()
    out = _out()
    if not quarantined:
        out.print(f"{escape(env)}: no token is quarantined")
    else:
        table = Table(title="quarantined (not bought until cleared)", title_justify="left")
        for name in ("token", "since", "source", "reason", "set by"):
            table.add_column(name)
        for row in quarantined:
            table.add_row(f"{row.symbol} {row.token}", f"{row.created_at:%Y-%m-%d %H:%M UTC}",
                          row.source, escape(row.reason), escape(row.actor))
        out.print(table)
    table = Table(title="token-safety verdicts", title_justify="left")
    for name in ("token", "verdict", "block", "expires", "reason"):
        table.add_column(name)
    for token, verdict in verdicts:
        if verdict is None:
            table.add_row(token.symbol, "not simulated yet", "", "", "")
            continue
        table.add_row(token.symbol, "safe" if verdict.safe else "[bold red]refused[/]",
                      str(verdict.block_number), f"{verdict.expires_at:%Y-%m-%d %H:%M UTC}",
                      escape(verdict.reason))
    out.print(table)


@app.command()
def clear(token: TokenArg, reason: ReasonOpt, env: EnvOpt = "dev") -> None:
    """Let the bot buy a quarantined token again (an operator's decision, recorded)."""
    from settings.files import load_config

    if not reason.strip():
        _fail("a reason is required to clear a quarantine: pass --reason 'why'")
    ledger = _ledger(env)
    actor = cli_actor()
    try:
        # By symbol or address, as the quarantine recorded it (the token may have left the
        # settings since), else as configured.
        active = ledger.active_quarantines(env) if ledger.current_revision() else []
        known = [(row.symbol, row.token) for row in active] + [
            (t.symbol, t.address) for t in load_config(env).tokens]
        address = next((a for sym, a in known if token in (sym, a)
                        or token.lower() == a.lower()), None)
        if address is None:
            _fail(f"{token!r} is neither quarantined nor a configured token of {env}")
        row = ledger.clear_quarantine(env=env, token=address, actor=actor, reason=reason)
    except ValueError as exc:
        _fail(str(exc))
    except DexpilotError as exc:
        _fail(str(exc))
    finally:
        ledger.dispose()
    log.warning("quarantine of %s cleared by %s: %s", row.symbol, actor, reason,
                extra={"token": row.token, "actor": actor, "env": env})
    _out().print(f"{escape(env)}: {row.symbol} ({row.token}) may be bought again "
                 f"(cleared by {escape(actor)}: {escape(reason)}; it was quarantined for "
                 f"{escape(row.reason)})")
