"""Backtests: candles replayed through the live strategy, router and risk engine."""

from dexpilot.backtest.data import read_candles
from dexpilot.backtest.engine import (
    Backtest,
    BacktestConfig,
    BacktestResult,
    StepDecision,
    Trade,
    aligned_series,
    default_limits,
    run_backtest,
)
from dexpilot.backtest.report import (
    BacktestReport,
    exposure_table,
    pnl_raw,
    realised_pnl,
    report_markdown,
    summarise,
    trades_table,
)

__all__ = [
    "Backtest",
    "BacktestConfig",
    "BacktestReport",
    "BacktestResult",
    "StepDecision",
    "Trade",
    "aligned_series",
    "default_limits",
    "exposure_table",
    "pnl_raw",
    "read_candles",
    "realised_pnl",
    "report_markdown",
    "run_backtest",
    "summarise",
    "trades_table",
]
