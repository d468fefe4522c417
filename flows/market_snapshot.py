"""Market snapshot: read every pool and wallet A's balances in one batched call, record the
balances, publish prices per venue and cross-venue spreads as a markdown artifact."""

from __future__ import annotations

from prefect import flow

from settings.blocks import load_settings
from tasks.market import publish_market_report, read_market, record_balances
from tasks.run_logging import log_setup


@flow(name="market-snapshot", on_running=[log_setup])
def market_snapshot(env: str = "dev") -> int:
    config = load_settings(env)
    snapshot = read_market(config)
    record_balances(config, snapshot)
    publish_market_report(config, snapshot)
    return snapshot.block_number


if __name__ == "__main__":
    market_snapshot()
