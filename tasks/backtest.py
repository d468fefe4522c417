"""Backtest tasks: read the candles, replay them, publish the report as artifacts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dexpilot.backtest import (
    BacktestConfig,
    BacktestResult,
    exposure_table,
    read_candles,
    report_markdown,
    run_backtest,
    summarise,
    trades_table,
)

ARTIFACT_TRADES = 200


@task(cache_policy=NO_CACHE)
def load_backtest_candles(candles_path: str) -> pl.DataFrame:
    return read_candles(candles_path)


@task(cache_policy=NO_CACHE)
def replay(candles: pl.DataFrame, config: BacktestConfig) -> BacktestResult:
    return run_backtest(candles, config)


@task(cache_policy=NO_CACHE)
def publish_backtest(result: BacktestResult, key: str) -> dict[str, Any]:
    report = summarise(result)
    create_markdown_artifact(markdown=report_markdown(result, report, f"Backtest `{key}`"),
                             key=f"backtest-{key}", description="backtest metrics")
    create_table_artifact(table=trades_table(result, ARTIFACT_TRADES),
                          key=f"backtest-{key}-trades",
                          description=f"the first {ARTIFACT_TRADES} trades")
    create_table_artifact(table=exposure_table(result), key=f"backtest-{key}-exposure",
                          description="equity and exposure over time (quote units)")
    return asdict(report)
