"""Small statistics shared by the models (numpy only; the statsmodels fits live in the models)."""

from __future__ import annotations

import math

import numpy as np

from dexpilot.analysis.models.base import FloatArray

BPS = 10_000.0


def half_life(x: FloatArray) -> float:
    """Candles for a deviation of ``x`` from its mean to halve, from an AR(1) fit of
    ``dx_t = a + b x_{t-1}``; ``inf`` when ``x`` does not revert (``b >= 0``)."""
    lag, step = x[:-1], np.diff(x)
    lag_c = lag - lag.mean()
    denom = float(lag_c @ lag_c)
    if denom <= 0:
        return math.inf
    b = float(lag_c @ (step - step.mean())) / denom
    phi = 1.0 + b
    if not 0.0 < phi < 1.0:
        return math.inf
    return -math.log(2.0) / math.log(phi)


def zscore_last(x: FloatArray, window: int) -> tuple[float, float, float]:
    """(z, mean, std) of the last value of ``x`` against the ``window`` values before it."""
    ref = x[-window - 1:-1] if len(x) > window else x[:-1]
    mean, std = float(ref.mean()), float(ref.std(ddof=1))
    if not std > 0:
        return 0.0, mean, std
    return (float(x[-1]) - mean) / std, mean, std


def clip01(value: float) -> float:
    return 0.0 if not math.isfinite(value) else min(1.0, max(0.0, value))
