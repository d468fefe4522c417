"""`dexpilot state show|pause|resume|stop`: read and drive the bot state machine.

The ledger URL comes from the environment's settings files (``settings.files.load_config``), so
these commands work without the Prefect server. Changes need ``--reason`` and are stored with
time, reason and actor ``cli:<os user>``. ``pause`` and ``stop`` work from every state (see
``dexpilot.control``); for a TRADING bot they wait (``--wait`` seconds) for its cycle to end
and, when a Prefect server is configured (``PREFECT_API_URL``), for wallet A's lock: holding
it, a TRADING state left by a killed trader is recovered. Any problem: the message on stderr
and exit code 1.

The rules live in ``dexpilot.control``, shared with the ``control`` flow.
"""

from __future__ import annotations

import getpass
import os
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dexpilot.control import (
    ACTOR_MAX_LEN,
    DEFAULT_WAIT_S,
    PAST,
    ROUTES,
    Action,
    WalletClaim,
    apply_action,
)
from dexpilot.errors import DexpilotError
from dexpilot.ledger import Ledger, StateTransitionRow
from dexpilot.ledger.views import recent_transitions
from dexpilot.state import (
    RECOVERY_ACTOR,
    BotState,
    BotStateMachine,
    LedgerTransitionStore,
)

app = typer.Typer(no_args_is_help=True, help="Show and change the bot's state.")

def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        user = os.environ.get("USER") or "unknown"
    return f"cli:{user}"[:ACTOR_MAX_LEN]


# -- the commands ------------------------------------------------------------------------------
EnvOpt = Annotated[str, typer.Option("--env", help="environment: dev, test or prod")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="why (stored with the transition)", show_default=False)
]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", min=0.0,
                 help="seconds to wait for a running trading cycle to end before giving up"),
]
LastOpt = Annotated[int, typer.Option("--last", "-n", min=1, help="how many transitions to list")]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}"
    )
    raise typer.Exit(code=1)


def _ledger(env: str) -> Ledger:
    from settings.files import load_config

    try:
        return Ledger(load_config(env).ledger.url)
    except DexpilotError as exc:
        _fail(str(exc))


def _wallet_claim(env: str) -> WalletClaim | None:
    """Wallet A's lock, if a Prefect server is configured to ask; without one Prefect would
    start a throwaway server of its own, which knows no lease of a trader's."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    from settings.files import load_config
    from tasks.locks import wallet_lock

    wallet = load_config(env).wallets.hot
    return lambda timeout_s: wallet_lock(wallet, timeout_s=timeout_s)


def _time(row: StateTransitionRow) -> str:
    return row.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def show(env: EnvOpt = "dev", last: LastOpt = 10) -> None:
    """Print the bot's current state and its last transitions."""
    ledger = _ledger(env)
    try:
        if ledger.current_revision() is None:  # an empty database: nothing was ever recorded
            rows: list[StateTransitionRow] = []
        else:
            rows = recent_transitions(ledger, env, last)
    except DexpilotError as exc:
        _fail(str(exc))
    finally:
        ledger.dispose()
    state = BotState(rows[-1].to_state) if rows else BotState.INIT
    out = _out()
    out.print(f"[bold]{escape(env)}[/]: bot is [bold]{state.value}[/]"
              + ("" if rows else " (no transitions recorded: the bot has never started)"))
    if not rows:
        return
    table = Table(title=f"last {len(rows)} transition(s)", title_justify="left")
    for name in ("time", "from", "to", "reason", "actor"):
        table.add_column(name)
    for row in rows:
        table.add_row(_time(row), row.from_state, row.to_state, escape(row.reason),
                      escape(row.actor))
    out.print(table)


def _change(env: str, action: Action, reason: str, wait: float) -> None:
    if not reason.strip():
        _fail(f"a reason is required to {action} the bot: pass --reason 'why'")
    ledger = _ledger(env)
    out = _out()

    def on_wait() -> None:
        out.print(f"{escape(env)}: the bot is TRADING; waiting up to {wait:g} s for its cycle "
                  "to end...")

    try:
        ledger.upgrade()
        machine = BotStateMachine(LedgerTransitionStore(ledger), env)
        # Only a TRADING bot, or a route through RUNNING, needs the lock, and Prefect costs
        # seconds to import: ask only then.
        current = machine.state
        needs_lock = action != "resume" and (
            current is BotState.TRADING or len(ROUTES[action].get(current, ())) > 1)
        claim = _wallet_claim(env) if needs_lock else None
        done = apply_action(machine, action, reason=reason, actor=cli_actor(), wait_s=wait,
                            on_wait=on_wait, claim_wallet=claim)
        state = machine.state
    except DexpilotError as exc:
        _fail(str(exc))
    finally:
        ledger.dispose()
    for step in done:
        verb = PAST[action] if step.actor != RECOVERY_ACTOR else "recovered"
        out.print(f"{escape(env)}: {step.from_state.value} -> [bold]{step.to_state.value}[/] "
                  f"({verb} by {escape(step.actor)}: {escape(step.reason)})")
    if not done:
        out.print(f"{escape(env)}: the bot is already [bold]{state.value}[/]; nothing changed")


@app.command()
def pause(reason: ReasonOpt, env: EnvOpt = "dev", wait: WaitOpt = DEFAULT_WAIT_S) -> None:
    """-> PAUSED from any state (a TRADING bot finishes its cycle first); trades nothing."""
    _change(env, "pause", reason, wait)


@app.command()
def resume(reason: ReasonOpt, env: EnvOpt = "dev") -> None:
    """PAUSED or ERROR -> RUNNING."""
    _change(env, "resume", reason, 0.0)


@app.command()
def stop(reason: ReasonOpt, env: EnvOpt = "dev", wait: WaitOpt = DEFAULT_WAIT_S) -> None:
    """-> STOPPED from any state (a TRADING bot finishes its cycle first); final."""
    _change(env, "stop", reason, wait)
