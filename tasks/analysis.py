"""Analysis tasks: candles per pair, the models on them (mapped per pair), signals stored,
and two artifacts: a table of the latest signals and a markdown summary of the market."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dexpilot.analysis.models import (
    AnalysisResult,
    analyse,
    default_models,
    pairs_models,
)
from dexpilot.analysis.models.report import market_summary_markdown, signal_rows, signals_table
from dexpilot.backtest.data import normalise_candles, read_candles
from dexpilot.config import AppConfig
from dexpilot.ledger import Ledger
from dexpilot.market.candles import (
    CANDLE_SCHEMA,
    CandleStore,
    check_interval,
    default_candle_root,
    load_candles,
    refresh_candles,
)
from dexpilot.market.ingest import SwapIngestor
from tasks.policy import NETWORK_RETRIES, NETWORK_RETRY_DELAYS, retry_on_network_errors

MAX_AUTO_PAIR_TRADES = 6  # pairs models for every two pairs only up to this many pairs
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def span(interval: str, count: int) -> timedelta:
    """``count`` candles of ``interval`` ("30s", "1m", "1h", "1d")."""
    return timedelta(seconds=int(interval[:-1]) * UNITS[interval[-1]] * count)


@task(cache_policy=NO_CACHE, retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS,
      retry_condition_fn=retry_on_network_errors)
def ingest_market(config: AppConfig, interval: str) -> int:
    """New swap events of every configured pool into the ledger, then the candles they change.

    Resumes from the last stored block and re-reads the last few (reorgs); returns the
    candle rows written.
    """
    pools = config.pool_refs()
    ledger = Ledger(config.ledger.url)
    try:
        ledger.upgrade()
        with config.chain.client() as client:
            report = SwapIngestor(client, ledger, pools).run()
        get_run_logger().info("ingested %d swap events up to block %d", report.inserted,
                              report.to_block)
        store = CandleStore(default_candle_root(config.ledger.url))
        return refresh_candles(ledger, pools, store, check_interval(interval),
                               since=report.changed_since)
    finally:
        ledger.dispose()


@task(cache_policy=NO_CACHE, retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS,
      retry_condition_fn=retry_on_network_errors)
def load_market_candles(config: AppConfig, candles_path: str | None, interval: str,
                        lookback: int) -> pl.DataFrame:
    """The candles to analyse: a file the operator names, else the candle store
    (``dexpilot.market.candles.load_candles`` for every configured pair, the last
    ``lookback`` windows). The store is filled by the ingest step (see ``flows/analysis.py``).
    """
    if candles_path:
        return read_candles(candles_path)
    root = default_candle_root(config.ledger.url)
    end = datetime.now(UTC)
    start = end - span(check_interval(interval), lookback)
    pairs = sorted({p.pair for p in config.pool_refs()})
    frames = [load_candles(pair, interval, start, end, root=root) for pair in pairs]
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=CANDLE_SCHEMA)
    return pl.concat([normalise_candles(f) for f in frames], how="vertical")


@task(cache_policy=NO_CACHE)
def list_pairs(candles: pl.DataFrame) -> list[str]:
    return sorted(str(p) for p in candles.get_column("pair").unique().to_list())


@task(cache_policy=NO_CACHE)
def analyse_pair(candles: pl.DataFrame, pair: str, cost_bps: float,
                 lookback: int) -> AnalysisResult:
    """The single-series models on one pair (one mapped task run per pair)."""
    return analyse(candles.filter(pl.col("pair") == pair),
                   default_models(cost_bps=cost_bps, lookback=lookback))


@task(cache_policy=NO_CACHE)
def analyse_pair_trades(candles: pl.DataFrame, pair_trades: Sequence[Sequence[str]] | None,
                        cost_bps: float, lookback: int) -> AnalysisResult:
    pairs = sorted(str(p) for p in candles.get_column("pair").unique().to_list())
    if pair_trades is None:
        chosen = list(combinations(pairs, 2)) if len(pairs) <= MAX_AUTO_PAIR_TRADES else []
    else:
        chosen = [(str(t[0]), str(t[1])) for t in pair_trades]
    return analyse(candles, pairs_models(chosen, cost_bps=cost_bps, lookback=lookback))


@task(cache_policy=NO_CACHE)
def store_signals(config: AppConfig, results: Sequence[AnalysisResult]) -> AnalysisResult:
    merged = AnalysisResult()
    for result in results:
        merged.extend(result)
    ledger = Ledger(config.ledger.url)
    try:
        ledger.upgrade()
        if merged.signals:
            ledger.record_signals(signal_rows(merged.signals, datetime.now(UTC)))
    finally:
        ledger.dispose()
    get_run_logger().info("%d signal(s), %d model(s) silent", len(merged.signals),
                          len(merged.silent))
    return merged


@task(cache_policy=NO_CACHE)
def publish_analysis(config: AppConfig, candles: pl.DataFrame,
                     result: AnalysisResult) -> dict[str, Any]:
    rows = signals_table(result)
    create_table_artifact(table=rows, key=f"signals-{config.env}",
                          description="latest model signals (and why silent models are silent)")
    markdown = market_summary_markdown(candles, result, config.env)
    create_markdown_artifact(markdown=markdown, key=f"analysis-{config.env}",
                             description="market summary from candles, signal counts")
    return {"signals": len(result.signals), "silent": len(result.silent)}
