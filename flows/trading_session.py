"""A long-running trading session: one cycle every interval until stopped or a bound is hit.

A flow run per cycle costs seconds of orchestration; here each cycle is a handful of task
runs inside one flow run. The session ends when the bot is STOPPED or in ERROR, or after
``max_cycles`` / ``max_seconds``; a PAUSED bot keeps the session alive but trades nothing.

A cycle failed by network or API errors is recorded and skipped; after
``strategy.max_failed_cycles`` in a row the bot goes to ERROR (``dexpilot.trading.session``).

Wallet A's lock is taken per cycle, with a lease of two intervals (``tasks.locks``): a session
killed mid-trade frees the wallet for the next one within about a minute, and that one's first
cycle, holding the lock, finds the TRADING state the dead one left and recovers it
(``dexpilot.state``: reconcile, then TRADING -> RUNNING by ``recovery``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from dexpilot.trading.cycle import observed_cycle
from dexpilot.trading.session import CycleGuard, SessionSummary
from settings.blocks import load_settings
from tasks.locks import wallet_lock
from tasks.metrics import push_metrics, pushed_metrics, serve_metrics
from tasks.run_logging import log_setup
from tasks.trading import run_step_as_task, trading_runtime


@flow(name="trading-session", on_running=[log_setup])
def trading_session(env: str = "dev", max_cycles: int | None = None,
                    max_seconds: float | None = None,
                    interval_s: float | None = None) -> dict[str, Any]:
    config = load_settings(env)
    interval = interval_s if interval_s is not None else config.strategy.cycle_interval_s
    summary = SessionSummary()
    started = time.monotonic()
    serve_metrics(config)
    with pushed_metrics(config) as metrics, trading_runtime(config) as runtime:
        guard = CycleGuard(runtime, summary)
        while not summary.bound_reached(max_cycles, max_seconds, started):
            with wallet_lock(config.wallets.hot, cycle_interval_s=interval):
                try:
                    guard.run(lambda: observed_cycle(runtime, metrics,
                                                     run_step=run_step_as_task))
                finally:
                    push_metrics(config)
            if guard.session_over:
                get_run_logger().warning("session ends: bot is %s", runtime.state.state.value)
                break
            time.sleep(interval)
    return asdict(summary)


if __name__ == "__main__":
    trading_session(max_cycles=10)
