"""Backtest throughput: candles replayed per second through models, strategy, router, risk.

Two pairs (a mean-reverting WETH/USDC, a random-walk WBTC/USDC; fixed seeds), the models run
on every candle (``--signal-every 1``) or every N.

    .venv/bin/python bench/backtest.py [--candles 5000] [--signal-every 1 5]
"""

from __future__ import annotations

import argparse
import sys
import time

from dexpilot.backtest import BacktestConfig, run_backtest, summarise, synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=5_000)
    parser.add_argument("--signal-every", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args(argv)
    frame = synthetic.market({
        "WETH/USDC": synthetic.mean_reverting(args.candles, 1, vol=0.004, phi=0.9),
        "WBTC/USDC": synthetic.random_walk(args.candles, 5, start=60_000.0),
    })
    print(f"{'every':>6} {'candles':>8} {'seconds':>8} {'candles/s':>10} {'trades':>7} "
          f"{'PnL':>12}")
    for every in args.signal_every:
        started = time.perf_counter()
        result = run_backtest(frame, BacktestConfig(signal_every=every))
        elapsed = time.perf_counter() - started
        report = summarise(result)
        print(f"{every:>6} {result.candles:>8} {elapsed:>8.2f} {result.candles / elapsed:>10.0f} "
              f"{report.trade_count:>7} {report.pnl_quote:>12,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
