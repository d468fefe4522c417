"""`dexpilot state show|pause|resume|stop`: read and drive the bot state machine.

The ledger URL comes from the environment's settings files (``settings.files.load_config``), so
these commands work without the Prefect server. Changes need ``--reason`` and are stored with
time, reason and actor ``cli:<os user>``. Pausing or stopping a TRADING bot waits (``--wait``
seconds) for its cycle to end; a bot still in INIT was never started and is not started here.
Any problem: the message on stderr and exit code 1.

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
    Action,
    apply_action,
    recent_transitions,
)
from dexpilot.errors import DexpilotError
from dexpilot.ledger import Ledger, StateTransitionRow
from dexpilot.state import (
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
        done = apply_action(machine, action, reason=reason, actor=cli_actor(), wait_s=wait,
                            on_wait=on_wait)
    except DexpilotError as exc:
        _fail(str(exc))
    finally:
        ledger.dispose()
    out.print(f"{escape(env)}: {done.from_state.value} -> [bold]{done.to_state.value}[/] "
              f"({PAST[action]} by {escape(done.actor)}: {escape(done.reason)})")


@app.command()
def pause(reason: ReasonOpt, env: EnvOpt = "dev", wait: WaitOpt = DEFAULT_WAIT_S) -> None:
    """RUNNING -> PAUSED (a TRADING bot finishes its cycle first); a paused bot trades nothing."""
    _change(env, "pause", reason, wait)


@app.command()
def resume(reason: ReasonOpt, env: EnvOpt = "dev") -> None:
    """PAUSED or ERROR -> RUNNING."""
    _change(env, "resume", reason, 0.0)


@app.command()
def stop(reason: ReasonOpt, env: EnvOpt = "dev", wait: WaitOpt = DEFAULT_WAIT_S) -> None:
    """RUNNING or ERROR -> STOPPED (a TRADING bot finishes its cycle first); final."""
    _change(env, "stop", reason, wait)
