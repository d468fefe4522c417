"""Operator control of the bot: pause, resume and stop with a reason, the same rules for the
`dexpilot state` command and the `control` flow.

An operator must always be able to reach a safe state, whatever state the bot is in, and
whatever happened to the process that put it there. So ``pause`` and ``stop`` work from every
state, each step along the diagram's own arrows and recorded with the operator as actor:
stopping a PAUSED bot is PAUSED -> RUNNING -> STOPPED, pausing or stopping a bot in INIT (so
that it never trades) INIT -> RUNNING -> target, pausing an ERROR bot ERROR -> RUNNING ->
PAUSED; a bot already in the target state (or STOPPED, which is final) is left as it is.

TRADING is a live trader's to end (TRADING -> RUNNING is the bot's own arrow), so pause and stop
wait for it. A process killed mid-trade never ends it; the wallet lock tells the two apart.
Every trader holds wallet A's lock while TRADING (``dexpilot.state``), so the caller passes
``claim_wallet`` (``tasks.locks.wallet_lock`` when a Prefect server is there to ask) and the
wait *is* the wait for that lock: a live trader lets go when its cycle ends; a dead one's lease
expires. Holding it, a TRADING state is recovered (TRADING -> RUNNING by ``recovery``, with
the operator's request as the reason) and the operator's change applied. Without a lock to ask
the wait polls the state and gives up with the next step to take. A route through RUNNING is
also taken under the lock when there is one, so no cycle starts trading between its steps.
``resume`` applies to a PAUSED or ERROR bot only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Literal

from dexpilot.errors import ConfigError, DexpilotError
from dexpilot.state import BotState, BotStateMachine, Transition, TransitionRefused

Action = Literal["pause", "resume", "stop"]
TARGETS: dict[str, BotState] = {
    "pause": BotState.PAUSED,
    "resume": BotState.RUNNING,
    "stop": BotState.STOPPED,
}
PAST = {"pause": "paused", "resume": "resumed", "stop": "stopped"}
S = BotState
# The arrows pause and stop take from each state that is not TRADING (an empty route: the bot
# is already there, or STOPPED, which is final and at least as safe as PAUSED).
ROUTES: dict[str, dict[BotState, tuple[BotState, ...]]] = {
    "pause": {S.INIT: (S.RUNNING, S.PAUSED), S.RUNNING: (S.PAUSED,),
              S.ERROR: (S.RUNNING, S.PAUSED), S.PAUSED: (), S.STOPPED: ()},
    "stop": {S.INIT: (S.RUNNING, S.STOPPED), S.RUNNING: (S.STOPPED,), S.ERROR: (S.STOPPED,),
             S.PAUSED: (S.RUNNING, S.STOPPED), S.STOPPED: ()},
}
DEFAULT_WAIT_S = 60.0
POLL_S = 0.2
ACTOR_MAX_LEN = 64
# ``claim_wallet(timeout_s)``: hold wallet A's lock, or raise TimeoutError after timeout_s.
WalletClaim = Callable[[float], AbstractContextManager[object]]


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
    claim_wallet: WalletClaim | None = None,
) -> list[Transition]:
    """Pause, resume or stop the bot; return the transitions recorded (none if it was already
    there); raises ``TransitionRefused`` (resume only) or ``ControlTimeout``.

    ``pause``/``stop`` of a TRADING bot wait up to ``wait_s`` seconds: for wallet A's lock if
    ``claim_wallet`` is given (see the module docstring), else for the state to change;
    ``on_wait`` is called once when the waiting starts.
    """
    if action not in TARGETS:
        raise ConfigError(f"unknown action {action!r}: use one of {', '.join(TARGETS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"a reason is required to {action} the bot (e.g. --reason 'maintenance')")
    reason = reason.strip()
    if action == "resume":
        return [_resume(machine, reason, actor)]
    deadline = time.monotonic() + max(wait_s, 0.0)
    waiting = False
    while True:
        if not _trading(machine):
            if claim_wallet is not None and len(ROUTES[action][machine.state]) > 1:
                # The route passes through RUNNING: under the lock, no cycle can start trading
                # in between (an ERROR or PAUSED bot must not trade on its way to safety).
                return _with_wallet(machine, action, reason, actor, claim_wallet,
                                    max(deadline - time.monotonic(), 0.0), wait_s)
            try:
                return _follow(machine, action, reason, actor)
            except TransitionRefused:
                # A cycle began between our read and the change: wait for that one too.
                if _trading(machine) and time.monotonic() < deadline:
                    continue
                raise
        if not waiting and on_wait is not None:
            on_wait()
        waiting = True
        if claim_wallet is not None:
            return _with_wallet(machine, action, reason, actor, claim_wallet,
                                max(deadline - time.monotonic(), 0.0), wait_s)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlTimeout(
                f"{machine.env}: the bot is still TRADING after waiting {wait_s:g} s for its "
                f"cycle to end, so it was not {PAST[action]}. Nothing was changed. If no "
                "trading process is alive, the next trading session recovers the state by "
                "itself; with PREFECT_API_URL set, this command asks wallet A's lock whether "
                "a trader is alive and recovers it. Or try again (or wait longer)."
            )
        _poll_sleep(min(poll_s, remaining))


def _trading(machine: BotStateMachine) -> bool:
    return machine.state is BotState.TRADING  # read afresh: another process may change it


def _with_wallet(machine: BotStateMachine, action: Action, reason: str, actor: str,
                 claim_wallet: WalletClaim, timeout_s: float, wait_s: float
                 ) -> list[Transition]:
    with ExitStack() as held:
        try:
            held.enter_context(claim_wallet(timeout_s))
        except TimeoutError:
            raise ControlTimeout(
                f"{machine.env}: the bot is {machine.state.value} and a live process held "
                f"wallet A's lock for the {wait_s:g} s waited, so it was not {PAST[action]}. "
                "Nothing was changed; try again (or wait longer). A killed trader's lock frees "
                "by itself within about a minute (its lease)."
            ) from None
        # Holding the lock: a live trader cannot be TRADING now (module docstring).
        recovered = machine.recover_orphaned_trade(
            f"{actor} asked to {action} the bot ({reason}); it was TRADING while wallet A's "
            "lock was free: the trader died mid-trade (the next cycle reconciles its orders)")
        return ([recovered] if recovered else []) + _follow(machine, action, reason, actor)


def _follow(machine: BotStateMachine, action: Action, reason: str, actor: str
            ) -> list[Transition]:
    return [machine.transition(step, reason=reason, actor=actor)
            for step in ROUTES[action][machine.state]]


def _resume(machine: BotStateMachine, reason: str, actor: str) -> Transition:
    current = machine.state
    if current is BotState.INIT:
        raise TransitionRefused(
            f"{machine.env}: the bot has never started (state INIT), so there is nothing to "
            "resume; it goes INIT -> RUNNING when it first starts. Nothing was changed."
        )
    # From RUNNING or STOPPED the state machine's refusal names the allowed targets; from
    # TRADING it would end the bot's cycle (TRADING -> RUNNING is the bot's own arrow).
    if current is BotState.TRADING:
        raise TransitionRefused(
            f"{machine.env}: resume applies to a PAUSED or ERROR bot; the bot is TRADING (a "
            "trading cycle is running). Nothing was changed; if its process died, `state "
            "stop` or `state pause` recover it, and so does the next trading session."
        )
    return machine.transition(BotState.RUNNING, reason=reason, actor=actor)
