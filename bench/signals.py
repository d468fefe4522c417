"""Signals at scale: every candle model on N pairs x M candles each.

Builds the candles with polars (a third of the pairs mean-reverting with the last close
stretched, a third with momentum, a third random walks; fixed seed), then times
``analyse(frame, default_models())`` (split by pair, validation of the whole history, the
fits on the last ``--lookback`` candles). Peak memory: tracemalloc (Python allocations, numpy
included) and the process's max RSS.

    .venv/bin/python bench/signals.py [--pairs 20 200] [--candles 10000] [--lookback 240]
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import tracemalloc

import polars as pl

from dexpilot.analysis.models import analyse, default_models
from dexpilot.backtest import synthetic


def build(pairs: int, candles: int) -> pl.DataFrame:
    frames = []
    for i in range(pairs):
        kind = i % 3
        if kind == 0:
            closes = synthetic.mean_reverting(candles, i, vol=0.004, phi=0.8)
            closes[-1] *= math.exp(0.03)
        elif kind == 1:
            closes = synthetic.momentum(candles, i)
            closes[-1] = closes[-2] * math.exp(0.01)
        else:
            closes = synthetic.random_walk(candles, i)
        frames.append(synthetic.candles_frame(f"T{i:03d}/USDC", closes))
    return pl.concat(frames, how="vertical")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--candles", type=int, default=10_000)
    parser.add_argument("--lookback", type=int, default=240)
    args = parser.parse_args(argv)
    print(f"{'pairs':>6} {'candles':>10} {'build s':>8} {'signals s':>10} {'ms/pair':>8} "
          f"{'signals':>8} {'silent':>7} {'tracemalloc peak MB':>20} {'max RSS MB':>11}")
    for pairs in args.pairs:
        started = time.perf_counter()
        frame = build(pairs, args.candles)
        built = time.perf_counter() - started
        models = default_models(lookback=args.lookback)
        tracemalloc.start()
        started = time.perf_counter()
        result = analyse(frame, models)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{pairs:>6} {frame.height:>10} {built:>8.2f} {elapsed:>10.2f} "
              f"{elapsed / pairs * 1000:>8.1f} {len(result.signals):>8} {len(result.silent):>7} "
              f"{peak / 2**20:>20.1f} {rss:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
