"""Control tasks: apply an operator's pause/resume/stop to the bot state machine, publish its
recent transitions. The rules (pause and stop from every state, waiting for a live trading
cycle, recovering a dead one's under wallet A's lock) are the same as the CLI's: both call
``dexpilot.control.apply_action``; here the Prefect server is always there to ask for the lock."""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from dexpilot.config import AppConfig
from dexpilot.control import (
    ACTOR_MAX_LEN,
    DEFAULT_WAIT_S,
    Action,
    apply_action,
)
from dexpilot.ledger import Ledger, StateTransitionRow
from dexpilot.ledger.views import recent_transitions
from dexpilot.state import BotStateMachine, LedgerTransitionStore
from tasks.locks import wallet_lock

ARTIFACT_ROWS = 20


def prefect_actor() -> str:
    return f"prefect:{flow_run.name or flow_run.id or 'unknown'}"[:ACTOR_MAX_LEN]


# No retries: a refused change or a timed-out wait is an answer, not a glitch.
@task(cache_policy=NO_CACHE, timeout_seconds=DEFAULT_WAIT_S + 60)
def apply_control(config: AppConfig, action: Action | Literal["show"], reason: str) -> str:
    """Apply ``action`` (``show`` changes nothing) and return the bot's state afterwards."""
    ledger = Ledger(config.ledger.url)
    try:
        ledger.upgrade()
        machine = BotStateMachine(LedgerTransitionStore(ledger), config.env)
        if action != "show":
            wallet = config.wallets.hot
            done = apply_action(
                machine, action, reason=reason, actor=prefect_actor(), wait_s=DEFAULT_WAIT_S,
                claim_wallet=lambda timeout_s: wallet_lock(wallet, timeout_s=timeout_s))
            for step in done:
                get_run_logger().info("%s: %s -> %s (%s by %s)", config.env,
                                      step.from_state.value, step.to_state.value, step.reason,
                                      step.actor)
        return machine.state.value
    finally:
        ledger.dispose()


@task(cache_policy=NO_CACHE)
def publish_transitions(config: AppConfig, state: str) -> str:
    ledger = Ledger(config.ledger.url)
    try:
        rows = recent_transitions(ledger, config.env, ARTIFACT_ROWS)
    finally:
        ledger.dispose()
    markdown = transitions_markdown(config.env, state, rows)
    create_markdown_artifact(markdown=markdown, key=f"bot-state-{config.env}",
                             description=f"bot state of {config.env} and its recent transitions")
    return markdown


def transitions_markdown(env: str, state: str, rows: list[StateTransitionRow]) -> str:
    lines = [f"# Bot state `{env}`: **{state}**", ""]
    if not rows:
        lines.append("No transitions recorded: the bot has never started.")
        return "\n".join(lines) + "\n"
    lines += [f"Last {len(rows)} transition(s), oldest first.", "",
              "| time (UTC) | from | to | reason | actor |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [row.created_at.strftime("%Y-%m-%d %H:%M:%S"), row.from_state, row.to_state,
                 row.reason, row.actor]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
