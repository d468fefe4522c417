"""Profit sweep (seed diagram 9): wallet A -> profit -> wallet B.

When wallet A's value above its working capital passes the threshold, the profit is sent to
wallet B in the quote token and recorded. Wallet A is locked like a trading cycle, so the
transfer never races a swap for a nonce.
"""

from __future__ import annotations

from prefect import flow

from settings.blocks import load_settings
from tasks.locks import wallet_lock
from tasks.metrics import pushed_metrics
from tasks.run_logging import log_setup
from tasks.sweep import find_profit, send_profit
from tasks.trading import trading_runtime


@flow(name="profit-sweep", on_running=[log_setup])
def profit_sweep(env: str = "dev") -> str | None:
    config = load_settings(env)
    with (pushed_metrics(config, job="dexpilot-sweep"), wallet_lock(config.wallets.hot),
          trading_runtime(config) as runtime):
        plan = find_profit(runtime)
        return send_profit(runtime, plan) if plan is not None else None


if __name__ == "__main__":
    profit_sweep()
