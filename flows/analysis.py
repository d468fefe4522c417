"""Analysis (seed: the AI analyzer): swap events -> candles -> models per pair (mapped) ->
signals stored -> a table of the latest signals and a markdown summary of the market.
With ``candles_path`` it analyses a file the operator brings instead of the chain."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from settings.blocks import load_settings
from tasks.analysis import (
    analyse_pair,
    analyse_pair_trades,
    ingest_market,
    list_pairs,
    load_market_candles,
    publish_analysis,
    store_signals,
)
from tasks.metrics import pushed_metrics
from tasks.run_logging import log_setup


@flow(name="analysis", on_running=[log_setup])
def analysis(env: str = "dev", candles_path: str | None = None, interval: str = "1m",
             lookback: int = 240, cost_bps: float = 60.0,
             pair_trades: list[list[str]] | None = None) -> dict[str, Any]:
    config = load_settings(env)
    with pushed_metrics(config, job="dexpilot-analysis") as metrics:
        if candles_path is None:
            ingest_market(config, interval)
        candles = load_market_candles(config, candles_path, interval, lookback)
        per_pair = analyse_pair.map(unmapped(candles), list_pairs(candles), unmapped(cost_bps),
                                     unmapped(lookback))
        pairs = analyse_pair_trades(candles, pair_trades, cost_bps, lookback)
        result = store_signals(config, [*per_pair.result(), pairs])
        outcome = publish_analysis(config, candles, result)
        metrics.analysis_done()
    return outcome


if __name__ == "__main__":
    # Dev: every minute from this process (`python flows/analysis.py`); test, staging and prod
    # run it from prefect.yaml deployments on their work pools.
    analysis.serve(name="dev", interval=60, parameters={"env": "dev"})
