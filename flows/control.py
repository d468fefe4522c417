"""Control: show, pause, resume or stop the bot of one environment from the Prefect UI (a typed
parameter form); the change is stored with actor ``prefect:<flow run name>`` and the recent
transitions are published as a markdown artifact."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from settings.blocks import load_settings
from tasks.control import apply_control, publish_transitions
from tasks.run_logging import log_setup


@flow(name="control", on_running=[log_setup])
def control(env: str = "dev", action: Literal["pause", "resume", "stop", "show"] = "show",
            reason: str = "") -> str:
    """Apply ``action`` to ``env``'s bot (pause/resume/stop need a reason); return its state."""
    config = load_settings(env)
    state = apply_control(config, action, reason)
    publish_transitions(config, state)
    return state


if __name__ == "__main__":
    control()
