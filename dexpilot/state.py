"""The bot state machine (seed diagram 10), persisted with time, reason and actor.

    INIT -> RUNNING;  RUNNING <-> TRADING;  RUNNING <-> PAUSED;  RUNNING -> ERROR;
    ERROR -> RUNNING;  ERROR -> STOPPED;  RUNNING -> STOPPED

Anything else is refused. There is deliberately no TRADING -> ERROR or TRADING -> STOPPED:
a fault during a trade goes TRADING -> RUNNING -> ERROR (``fault`` takes both seed arrows),
and an operator who pauses or stops a trading bot waits for its cycle to end.

A process killed mid-trade never takes its TRADING -> RUNNING arrow, and nothing else may
take it for a live trader. Who may: whoever holds wallet A's lock (``tasks.locks``). Every
trader goes TRADING only inside that lock and back to RUNNING before letting it go, so a
TRADING state seen *while holding the lock* was left by a process that died holding it (its
lease expired). ``recover_orphaned_trade`` records that TRADING -> RUNNING with actor
``recovery`` and the reason; the next cycle's reconcile settles what the dead process sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from dexpilot.errors import DexpilotError
from dexpilot.ledger import Ledger, StateTransitionRow


class BotState(StrEnum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    TRADING = "TRADING"
    PAUSED = "PAUSED"
    ERROR = "ERROR"
    STOPPED = "STOPPED"


ALLOWED: frozenset[tuple[BotState, BotState]] = frozenset({
    (BotState.INIT, BotState.RUNNING),
    (BotState.RUNNING, BotState.TRADING),
    (BotState.TRADING, BotState.RUNNING),
    (BotState.RUNNING, BotState.PAUSED),
    (BotState.PAUSED, BotState.RUNNING),
    (BotState.RUNNING, BotState.ERROR),
    (BotState.ERROR, BotState.RUNNING),
    (BotState.ERROR, BotState.STOPPED),
    (BotState.RUNNING, BotState.STOPPED),
})


RECOVERY_ACTOR = "recovery"


class TransitionRefused(DexpilotError):
    """The diagram has no arrow for this change."""


@dataclass(frozen=True, slots=True)
class Transition:
    env: str
    from_state: BotState
    to_state: BotState
    reason: str
    actor: str
    at: datetime


class TransitionStore(Protocol):
    """Where transitions are kept (the ledger); the latest one is the current state."""

    def latest_transition(self, env: str) -> Transition | None: ...

    def append_transition(self, transition: Transition) -> None: ...


class BotStateMachine:
    def __init__(
        self,
        store: TransitionStore,
        env: str,
        *,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.store = store
        self.env = env
        self.on_transition = on_transition

    @property
    def state(self) -> BotState:
        latest = self.store.latest_transition(self.env)
        return latest.to_state if latest else BotState.INIT

    def can(self, to_state: BotState) -> bool:
        return (self.state, to_state) in ALLOWED

    def transition(self, to_state: BotState, *, reason: str, actor: str) -> Transition:
        if not reason.strip():
            raise ValueError("a state change needs a reason")
        current = self.state
        if (current, to_state) not in ALLOWED:
            raise TransitionRefused(
                f"{self.env}: {current.value} -> {to_state.value} is not allowed "
                f"(from {current.value} the bot may go to "
                f"{', '.join(sorted(t.value for f, t in ALLOWED if f is current)) or 'nowhere'})"
            )
        transition = Transition(self.env, current, to_state, reason, actor, datetime.now(UTC))
        self.store.append_transition(transition)
        if self.on_transition:
            self.on_transition(transition)
        return transition

    # -- the moves the bot and its operators make -----------------------------------------
    def start(self, actor: str = "bot") -> None:
        """INIT -> RUNNING on first start; a no-op for a bot already past INIT."""
        if self.state is BotState.INIT:
            self.transition(BotState.RUNNING, reason="first start", actor=actor)

    def may_trade(self) -> bool:
        return self.state is BotState.RUNNING

    def begin_trading(self, reason: str = "trading cycle") -> None:
        self.transition(BotState.TRADING, reason=reason, actor="bot")

    def end_trading(self, reason: str = "cycle done") -> None:
        if self.state is BotState.TRADING:
            self.transition(BotState.RUNNING, reason=reason, actor="bot")

    def recover_orphaned_trade(self, reason: str) -> Transition | None:
        """TRADING -> RUNNING for a trader that died mid-trade; ``None`` if not TRADING.

        Only a holder of wallet A's lock may call this (see the module docstring): it is what
        proves the process that went TRADING is gone.
        """
        if self.state is not BotState.TRADING:
            return None
        return self.transition(BotState.RUNNING, reason=reason, actor=RECOVERY_ACTOR)

    def fault(self, reason: str, actor: str = "bot") -> None:
        """A system fault: stop trading until an operator resumes.

        Only a running (or trading) bot has an arrow to ERROR; a PAUSED or STOPPED bot is
        not trading anyway and keeps its state (the fault is still recorded as an error).
        """
        if self.state is BotState.TRADING:
            self.transition(BotState.RUNNING, reason=f"trade aborted: {reason}", actor=actor)
        if self.state is BotState.RUNNING:
            self.transition(BotState.ERROR, reason=reason, actor=actor)

    def pause(self, reason: str, actor: str) -> Transition:
        return self.transition(BotState.PAUSED, reason=reason, actor=actor)

    def resume(self, reason: str, actor: str) -> Transition:
        return self.transition(BotState.RUNNING, reason=reason, actor=actor)

    def stop(self, reason: str, actor: str) -> Transition:
        return self.transition(BotState.STOPPED, reason=reason, actor=actor)


class LedgerTransitionStore:
    """Transitions kept in the ledger's ``state_transitions`` table.

    Appending is a compare-and-set: inside one write transaction (SQLite takes its write lock
    at BEGIN, PostgreSQL an advisory lock per environment) the latest state is read again and
    the new row is refused if someone else changed the state since the machine read it — an
    operator's pause can never be lost to the bot starting a cycle at the same instant.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def latest_transition(self, env: str) -> Transition | None:
        row = self.ledger.latest_transition(env)
        return _transition(row) if row is not None else None

    def append_transition(self, transition: Transition) -> None:
        current = self.ledger.record_transition_if_current(
            transition.env, transition.from_state.value, transition.to_state.value,
            reason=transition.reason, actor=transition.actor, created_at=transition.at)
        if current != transition.from_state.value:
            raise TransitionRefused(
                f"{transition.env}: the state changed to {current} meanwhile; "
                f"{transition.from_state.value} -> {transition.to_state.value} not applied"
            )


def _transition(row: StateTransitionRow) -> Transition:
    return Transition(row.env, BotState(row.from_state), BotState(row.to_state), row.reason,
                      row.actor, row.created_at)
