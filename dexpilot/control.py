"""Operator control of the bot: pause, resume and stop with a reason, the same rules for the
`dexpilot state` command and the `control` flow.

Pausing or stopping a TRADING bot waits for its cycle to end (TRADING -> RUNNING is the bot's
own arrow); a bot still in INIT was never started and is not started here; resume applies to
a PAUSED or ERROR bot only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from sqlmodel import col, select

from dexpilot.errors import ConfigError, DexpilotError
from dexpilot.ledger import Ledger, StateTransitionRow
from dexpilot.state import BotState, BotStateMachine, Transition, TransitionRefused

Action = Literal["pause", "resume", "stop"]
TARGETS: dict[str, BotState] = {
    "pause": BotState.PAUSED,
    "resume": BotState.RUNNING,
    "stop": BotState.STOPPED,
}
PAST = {"pause": "paused", "resume": "resumed", "stop": "stopped"}
DEFAULT_WAIT_S = 60.0
POLL_S = 0.2
ACTOR_MAX_LEN = 64


class ControlTimeout(DexpilotError):
    """A pause or stop waited for the trading cycle to end, and it did not end in time."""


def _poll_sleep(seconds: float) -> None:
    time.sleep(seconds)


def apply_action(
    machine: BotStateMachine,
    action: Action,
    *,
    reason: str,
    actor: str,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = POLL_S,
    on_wait: Callable[[], None] | None = None,
) -> Transition:
    """Pause, resume or stop the bot; raises ``TransitionRefused`` or ``ControlTimeout``.

    ``pause``/``stop`` of a TRADING bot wait up to ``wait_s`` seconds for the cycle to end
    (TRADING -> RUNNING, the bot's own arrow) and then apply; ``on_wait`` is called once when
    the waiting starts. ``resume`` applies to a PAUSED or ERROR bot only: it never ends a
    trading cycle nor starts a bot that is still in INIT.
    """
    if action not in TARGETS:
        raise ConfigError(f"unknown action {action!r}: use one of {', '.join(TARGETS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"a reason is required to {action} the bot (e.g. --reason 'maintenance')")
    target = TARGETS[action]
    env = machine.env
    deadline = time.monotonic() + max(wait_s, 0.0)
    waiting = False
    while True:
        current = machine.state
        if current is BotState.INIT:
            raise TransitionRefused(
                f"{env}: the bot has never started (state INIT), so there is nothing to {action}; "
                f"it goes INIT -> RUNNING when it first starts, and {action} is possible after "
                "that. Nothing was changed."
            )
        # resume from RUNNING or STOPPED: the state machine's refusal names the allowed targets;
        # from TRADING it would end the bot's cycle (TRADING -> RUNNING is the bot's own arrow).
        if action == "resume" and current is BotState.TRADING:
            raise TransitionRefused(
                f"{env}: resume applies to a PAUSED or ERROR bot; the bot is TRADING (a "
                "trading cycle is running). Nothing was changed."
            )
        if current is BotState.TRADING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlTimeout(
                    f"{env}: the bot is still TRADING after waiting {wait_s:g} s for its cycle "
                    f"to end, so it was not {PAST[action]}. Nothing was changed; try again "
                    "(or wait longer)."
                )
            if not waiting and on_wait is not None:
                on_wait()
            waiting = True
            _poll_sleep(min(poll_s, remaining))
            continue
        try:
            return machine.transition(target, reason=reason.strip(), actor=actor)
        except TransitionRefused:
            # The bot began a new cycle between our read and the change: wait for that one too.
            if machine.state is BotState.TRADING and time.monotonic() < deadline:
                continue
            raise


def recent_transitions(ledger: Ledger, env: str, limit: int = 10) -> list[StateTransitionRow]:
    """The last ``limit`` transitions of ``env``, oldest first."""
    statement = (
        select(StateTransitionRow)
        .where(StateTransitionRow.env == env)
        .order_by(col(StateTransitionRow.id).desc())
        .limit(limit)
    )
    with ledger.session(write=False) as session:
        rows = list(session.exec(statement).all())
    return rows[::-1]
