"""How tasks retry: only the error kind a retry can cure (``NetworkError``), with backoff."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from dexpilot.errors import is_retryable

NETWORK_RETRIES = 3
NETWORK_RETRY_DELAYS = exponential_backoff(backoff_factor=1)(NETWORK_RETRIES)


def retry_on_network_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry NetworkError; API and system errors go to the caller."""
    try:
        state.result()
    except BaseException as exc:  # the task's own exception, re-raised by result()
        return is_retryable(exc)
    return False
