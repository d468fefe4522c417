"""The trading cycle's steps as Prefect tasks, each with the retry policy its step can bear.

Reads (reconcile, snapshot, gas price, routing) retry ``NetworkError`` with backoff; steps
that write decisions or send transactions never retry: a sent transaction is reconciled by
hash and nonce in the next cycle, never re-sent blindly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import Task
from prefect.utilities.annotations import quote

from dexpilot.config import AppConfig
from dexpilot.execution.wallet import HotWallet
from dexpilot.logs import register_secret
from dexpilot.metrics import process_metrics
from dexpilot.trading.cycle import CycleStep, TradingRuntime
from settings.blocks import load_hot_wallet_key
from tasks.policy import NETWORK_RETRIES, NETWORK_RETRY_DELAYS, retry_on_network_errors

_tasks: dict[CycleStep, Task[..., Any]] = {}


def _task_for(step: CycleStep) -> Task[..., Any]:
    """The step as a task with its declared retry policy (``CycleStep.retried``)."""
    if step not in _tasks:
        _tasks[step] = Task(
            fn=step.function, name=step.name, cache_policy=NO_CACHE,
            retries=NETWORK_RETRIES if step.retried else 0,
            retry_delay_seconds=NETWORK_RETRY_DELAYS if step.retried else 0,
            retry_condition_fn=retry_on_network_errors if step.retried else None,
        )
    return _tasks[step]


def run_step_as_task(step: CycleStep, *args: Any) -> Any:
    """The step runner the flows hand to ``run_cycle``.

    The arguments are quoted: they are in-process objects (the runtime, a snapshot of every
    pool) that Prefect would otherwise walk item by item on each call looking for futures,
    which costs more than the step itself at 200 pools.
    """
    return _task_for(step)(*(quote(arg) for arg in args))


@contextmanager
def trading_runtime(config: AppConfig) -> Iterator[TradingRuntime]:
    """Clients, ledger, venues and (in live mode) the signer, for the length of a flow run.

    The key is read here, inside the run, never passed as a flow or task parameter (Prefect
    stores those).
    """
    signer = None
    if config.strategy.mode == "live":
        key = load_hot_wallet_key(config.env).get_secret_value()
        register_secret(key)  # masked in every JSON log line, wherever it would appear
        signer = HotWallet(key)
    runtime = TradingRuntime.build(config, signer)
    process_metrics().attach(runtime)
    try:
        yield runtime
    finally:
        runtime.close()
