"""Synthetic candles with known structure, for tests, benchmarks and demos (fixed seeds).

Every generator returns closes; ``candles_frame`` wraps closes into the candle schema of
``dexpilot.market.candles`` (open = previous close, high/low around them, volumes, trades).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from dexpilot.analysis.models.base import FloatArray
from dexpilot.market.candles import CANDLE_SCHEMA

START = datetime(2026, 1, 1, tzinfo=UTC)


def random_walk(n: int, seed: int, *, start: float = 3000.0, vol: float = 0.002) -> FloatArray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, vol, n)
    steps[0] = 0.0
    return np.asarray(start * np.exp(np.cumsum(steps)), dtype=np.float64)


def mean_reverting(n: int, seed: int, *, start: float = 3000.0, vol: float = 0.002,
                   phi: float = 0.9) -> FloatArray:
    """An AR(1) log price around ``log(start)`` (Ornstein-Uhlenbeck in discrete time)."""
    rng = np.random.default_rng(seed)
    dev = np.zeros(n)
    shocks = rng.normal(0.0, vol, n)
    for i in range(1, n):
        dev[i] = phi * dev[i - 1] + shocks[i]
    return np.asarray(start * np.exp(dev), dtype=np.float64)


def momentum(n: int, seed: int, *, start: float = 3000.0, vol: float = 0.0002,
             phi: float = 0.8) -> FloatArray:
    """Log returns that follow an AR(1) with coefficient ``phi``: moves continue."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    shocks = rng.normal(0.0, vol, n)
    for i in range(1, n):
        r[i] = phi * r[i - 1] + shocks[i]
    return np.asarray(start * np.exp(np.cumsum(r)), dtype=np.float64)


def cointegrated(n: int, seed: int, *, start_x: float = 60_000.0, start_y: float = 3000.0,
                 beta: float = 1.0, vol: float = 0.002, spread_vol: float = 0.002,
                 phi: float = 0.8) -> tuple[FloatArray, FloatArray]:
    """(y, x): ``log y = c + beta log x + AR(1) spread``, ``x`` a random walk."""
    rng = np.random.default_rng(seed)
    lx = np.log(start_x) + np.cumsum(np.r_[0.0, rng.normal(0.0, vol, n - 1)])
    spread = np.zeros(n)
    shocks = rng.normal(0.0, spread_vol, n)
    for i in range(1, n):
        spread[i] = phi * spread[i - 1] + shocks[i]
    ly = np.log(start_y) + beta * (lx - np.log(start_x)) + spread
    return np.asarray(np.exp(ly), dtype=np.float64), np.asarray(np.exp(lx), dtype=np.float64)


def candles_frame(pair: str, closes: Sequence[float] | FloatArray, *, start: datetime = START,
                  interval_s: int = 60, venue: str = "all", pool: str = "all",
                  volume_quote: float = 50_000.0) -> pl.DataFrame:
    close = np.asarray(closes, dtype=np.float64)
    n = len(close)
    opens = np.r_[close[:1], close[:-1]] if n else close
    ts = [start + timedelta(seconds=interval_s * i) for i in range(n)]
    with np.errstate(invalid="ignore", divide="ignore"):
        vol_base = np.where(close > 0, volume_quote / close, 0.0)
    return pl.DataFrame({
        "ts": ts, "pair": [pair] * n, "venue": [venue] * n, "pool": [pool] * n,
        "open": opens, "high": np.fmax(opens, close) * 1.0005,
        "low": np.fmin(opens, close) * 0.9995, "close": close,
        "volume_base": vol_base, "volume_quote": np.full(n, volume_quote),
        "trades": np.full(n, 10, dtype=np.int64),
    }, schema=CANDLE_SCHEMA)


def market(pairs: dict[str, FloatArray], **kwargs: object) -> pl.DataFrame:
    """Several pairs' candles in one frame (same timestamps)."""
    frames = [candles_frame(pair, closes, **kwargs) for pair, closes in pairs.items()]  # type: ignore[arg-type]
    return pl.concat(frames, how="vertical")
