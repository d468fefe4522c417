"""One trading cycle (seed diagram 3): market data -> analysis -> decision -> risk check ->
execution -> state update. Pending orders from an earlier run are reconciled first; wallet A
is locked for the cycle so no other cycle can trade it at the same time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from dexpilot.trading.cycle import observed_cycle
from settings.blocks import load_settings
from tasks.locks import wallet_lock
from tasks.metrics import pushed_metrics
from tasks.run_logging import log_setup
from tasks.trading import run_step_as_task, trading_runtime


@flow(name="trading-cycle", on_running=[log_setup])
def trading_cycle(env: str = "dev") -> dict[str, Any]:
    config = load_settings(env)
    with (pushed_metrics(config) as metrics, wallet_lock(config.wallets.hot),
          trading_runtime(config) as runtime):
        report = observed_cycle(runtime, metrics, run_step=run_step_as_task)
    return asdict(report)


if __name__ == "__main__":
    trading_cycle()
