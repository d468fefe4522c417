"""Profit sweep tasks: decide how much is profit, send it to wallet B, record it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from dexpilot.execution.sweep import SweepPlan, plan_sweep
from dexpilot.market.valuation import quote_prices
from dexpilot.metrics import process_metrics
from dexpilot.trading.cycle import TradingRuntime, balances_by_symbol, read_snapshot
from tasks.policy import NETWORK_RETRIES, NETWORK_RETRY_DELAYS, retry_on_network_errors


@task(cache_policy=NO_CACHE, retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS,
      retry_condition_fn=retry_on_network_errors)
def find_profit(rt: TradingRuntime) -> SweepPlan | None:
    snapshot = read_snapshot(rt)
    return plan_sweep(
        balances=balances_by_symbol(rt, snapshot), tokens=[t.token() for t in rt.config.tokens],
        prices=quote_prices(snapshot, rt.quote, rt.hub), quote=rt.quote,
        cold_wallet=rt.config.wallets.cold,
        working_capital_quote=rt.config.risk.working_capital_quote,
        threshold_quote=rt.config.sweep.threshold_quote,
    )


@task(cache_policy=NO_CACHE)  # never retried: a sent transfer is reconciled, not re-sent
def send_profit(rt: TradingRuntime, plan: SweepPlan) -> str:
    tx_hash = rt.executor.transfer(plan.token, plan.to, plan.amount)
    rt.ledger.record_profit_sweep(token=plan.token.address, amount=plan.amount,
                                  to_address=plan.to, tx_hash=tx_hash)
    process_metrics().profit_swept(plan.token.symbol, plan.amount / 10**plan.token.decimals)
    return tx_hash
