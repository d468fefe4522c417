"""Benchmark: OHLCV candles built per second from swap events (synthetic, in polars).

Generates N swap events (default 1,000,000) over 8 pools of 3 pairs spread across a week, then
times ``build_candles`` (per pool and cross-venue, polars ``group_by_dynamic``) for 1-minute and
1-hour candles, plus ``trades_from_swaps`` (the exact-integer -> float conversion of stored
events) on a smaller sample. Prints events/s and candles/s.

    .venv/bin/python bench/candles.py [--events 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from dexpilot.market.candles import TRADE_SCHEMA, build_candles, trades_from_swaps
from dexpilot.market.pools import PoolKind, PoolRef
from dexpilot.money import Token

PAIRS = {"WETH/USDC": 3000.0, "WBTC/USDC": 97_000.0, "UNI/WETH": 0.003}
VENUES = ("uniswap-v2", "sushiswap-v2", "uniswap-v3")
START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_trades(n: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    pools = [(pair, venue) for pair in PAIRS for venue in VENUES][:8]
    which = rng.integers(0, len(pools), n)
    seconds = np.sort(rng.integers(0, 7 * 24 * 3600, n))
    ref = np.array([PAIRS[pools[i][0]] for i in which])
    price = ref * np.exp(rng.normal(0, 0.01, n))
    base = rng.exponential(1.0, n)
    return pl.DataFrame({
        "ts": (np.datetime64(START.replace(tzinfo=None), "us")
               + seconds.astype("timedelta64[s]")),
        "block_number": np.arange(n, dtype=np.int64),
        "log_index": np.zeros(n, dtype=np.int64),
        "pair": [pools[i][0] for i in which],
        "venue": [pools[i][1] for i in which],
        "pool": [f"0x{i:040x}" for i in which],
        "price": price,
        "volume_base": base,
        "volume_quote": base * price,
    }).with_columns(pl.col("ts").dt.replace_time_zone("UTC")).cast(dict(TRADE_SCHEMA))


@dataclass
class _Swap:
    pool: str
    block_number: int
    block_time: datetime
    log_index: int
    amount0_in: int
    amount1_in: int
    amount0_out: int
    amount1_out: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trades = synthetic_trades(args.events)
    print(f"polars {pl.__version__}, {args.events:,} swap events, 8 pools, 3 pairs, 7 days")
    for interval in ("1m", "1h"):
        best = float("inf")
        candles = pl.DataFrame()
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            candles = build_candles(trades, interval)
            best = min(best, time.perf_counter() - t0)
        print(f"build_candles {interval:>3}: {best * 1000:8.1f} ms  "
              f"{args.events / best:14,.0f} events/s  {candles.height / best:12,.0f} candles/s  "
              f"({candles.height:,} candles incl. cross-venue)")
    weth = Token("WETH", "0x" + "11" * 20, 18)
    usdc = Token("USDC", "0x" + "22" * 20, 6)
    pool = PoolRef("uniswap-v2", PoolKind.V2, "0x" + "33" * 20, weth, usdc, 3000)
    sample = 100_000
    swaps = [_Swap(pool.address, i, START + timedelta(seconds=i), 0, 10**18 + i, 0, 0,
                   3_000 * 10**6 + i) for i in range(sample)]
    t0 = time.perf_counter()
    frame = trades_from_swaps(swaps, [pool])
    took = time.perf_counter() - t0
    print(f"trades_from_swaps  : {took * 1000:8.1f} ms  {sample / took:14,.0f} events/s  "
          f"({frame.height:,} rows from raw-integer events)")


if __name__ == "__main__":
    main()
