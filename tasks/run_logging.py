"""The logging of every flow run: dexpilot's JSON lines with secrets masked, also in Prefect.

A worker runs each flow run in a subprocess of its own, and the core's loggers there know
nothing of Prefect: without this they would write nothing (their level defaults to WARNING),
mask nothing, and never reach the run's logs in the Prefect API. Every flow therefore lists
``log_setup`` as an ``on_running`` hook; Prefect calls it in the flow run's process as the run
starts, before its body, wherever the run executes (a worker's subprocess, ``serve``, a direct
call in a test). It:

- installs ``dexpilot.logs.setup_logging`` with the run's ``env`` parameter (JSON lines on
  stdout, which the worker copies into its own output);
- attaches a Prefect ``APILogHandler`` to the ``dexpilot`` logger, so the core's lines
  ("order written", "swap sent") are stored with the run, as ``PREFECT_LOGGING_EXTRA_LOGGERS``
  would, without relying on that being set in the worker's environment. Records outside any
  run (a process that goes on after its flow) are left out instead of raising Prefect's
  missing-context warning;
- puts ``MaskSecrets`` on every handler the core's records reach, Prefect's included.
"""

from __future__ import annotations

import logging
from typing import Any

from dexpilot.logs import mask_handlers, setup_logging

CORE_LOGGER = "dexpilot"
API_HANDLER_NAME = "dexpilot-prefect-api"


def _in_a_run(record: logging.LogRecord) -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def install_run_logging(env: str | None = None) -> None:
    """The flow run's logging (see the module docstring). Idempotent."""
    from prefect.logging.handlers import APILogHandler

    setup_logging(env)
    core = logging.getLogger(CORE_LOGGER)
    if not any(isinstance(h, APILogHandler) for h in core.handlers):
        handler = APILogHandler()
        handler.set_name(API_HANDLER_NAME)
        handler.addFilter(_in_a_run)
        core.addHandler(handler)
    mask_handlers(CORE_LOGGER, "")


def log_setup(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_running`` hook of every flow: ``install_run_logging`` with the run's ``env``."""
    parameters = getattr(flow_run, "parameters", None) or {}
    env = parameters.get("env")
    install_run_logging(env if isinstance(env, str) else None)
