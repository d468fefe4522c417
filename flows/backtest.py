"""Backtest: replay candles (a Parquet or CSV file) through the live strategy, router and risk
engine with a fee, price-impact and gas model; publish PnL, Sharpe, drawdown, win rate, trades
and exposure over time as artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from dexpilot.backtest import BacktestConfig
from tasks.backtest import load_backtest_candles, publish_backtest, replay
from tasks.run_logging import log_setup


@flow(name="backtest", on_running=[log_setup])
def backtest(candles_path: str, key: str = "latest", quote: str = "USDC",
             depth_quote: int = 2_000_000, fee_ppm: int = 3_000, gas_gwei: int = 20,
             cost_bps: float = 60.0, lookback: int = 240,
             signal_every: int = 1) -> dict[str, Any]:
    config = BacktestConfig(quote=quote, depth_quote=depth_quote, fee_ppm=fee_ppm,
                            gas_price_wei=gas_gwei * 10**9, cost_bps=cost_bps,
                            lookback=lookback, signal_every=signal_every)
    candles = load_backtest_candles(candles_path)
    result = replay(candles, config)
    return publish_backtest(result, key)


if __name__ == "__main__":
    backtest(candles_path="candles.parquet")
