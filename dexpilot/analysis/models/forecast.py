"""Short-horizon forecast: an autoregression of log returns, trusted only past its own doubt.

``AutoReg`` (statsmodels) is fitted to the last ``lookback`` log returns; the cumulative
return over ``horizon`` candles is forecast with its prediction interval (the forecast errors'
variance from the AR's moving-average weights, ``arma2ma``). The model signals only when the
whole interval clears the costs: a buy when its lower bound beats ``cost_bps``, a sell when its
upper bound is below ``-cost_bps``. Returns without memory (a random walk) give a near-zero
forecast inside a wide interval: silence.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import ClassVar

import numpy as np
from statsmodels.tsa.ar_model import AutoReg
from statsmodels.tsa.arima_process import arma2ma

from dexpilot.analysis.models.base import ModelResult, NoSignal, PriceSeries, SingleSeriesModel
from dexpilot.analysis.models.stats import BPS, clip01
from dexpilot.analysis.signal import Side, Signal


class ForecastModel(SingleSeriesModel):
    name: ClassVar[str] = "ar_forecast"

    def __init__(self, *, lookback: int = 240, lags: int = 2, horizon: int = 5,
                 interval: float = 0.8, cost_bps: float = 60.0) -> None:
        if lags < 1 or horizon < 1 or not 0.0 < interval < 1.0:
            raise ValueError("need lags >= 1, horizon >= 1 and 0 < interval < 1")
        if lookback < 10 * lags:
            raise ValueError("lookback must be at least 10 x lags")
        self.lookback, self.lags, self.horizon = lookback, lags, horizon
        self.interval, self.cost_bps = interval, cost_bps
        self.z = NormalDist().inv_cdf(0.5 + interval / 2.0)
        self.min_rows = lookback + 1

    def fit(self, series: PriceSeries) -> ModelResult:
        s = series.tail(self.lookback + 1)
        returns = np.diff(np.log(s.close))
        screen = _ols_path(returns, self.lags, self.horizon)
        if abs(screen) * BPS <= self.cost_bps:  # cannot clear costs even without doubt
            return NoSignal(self.name, s.pair, f"forecast {screen * BPS:+.1f} bps over "
                                               f"{self.horizon} candles does not clear costs "
                                               f"of {self.cost_bps:g} bps")
        result = AutoReg(returns, lags=self.lags, trend="c").fit()
        path = np.asarray(result.forecast(self.horizon), dtype=np.float64)
        mean = float(path.sum())
        # Cumulative forecast error: sum_j e_{n+j} * (psi_0 + ... + psi_{h-j}).
        ar = np.r_[1.0, -np.asarray(result.params[1:], dtype=np.float64)]
        psi = arma2ma(ar, np.array([1.0]), lags=self.horizon)
        weights = np.cumsum(psi)[::-1]
        sd = math.sqrt(float(result.sigma2) * float(weights @ weights))
        low, high = (mean - self.z * sd) * BPS, (mean + self.z * sd) * BPS
        shown = (f"forecast {mean * BPS:+.1f} bps over {self.horizon} candles, "
                 f"{self.interval:.0%} interval [{low:+.1f}, {high:+.1f}]")
        if low > self.cost_bps:
            side, edge = Side.BUY, mean * BPS - self.cost_bps
        elif high < -self.cost_bps:
            side, edge = Side.SELL, -mean * BPS - self.cost_bps
        else:
            return NoSignal(self.name, s.pair, f"{shown} does not clear costs of "
                                               f"{self.cost_bps:g} bps")
        margin = (low - self.cost_bps) if side is Side.BUY else (-high - self.cost_bps)
        confidence = clip01(0.5 + margin / (2.0 * max(abs(mean) * BPS, 1e-9)))
        return [Signal(
            model=self.name, pair=s.pair, side=side, edge_bps=edge, confidence=confidence,
            horizon_s=self.horizon * s.interval_s(), inputs_from=s.start, inputs_to=s.end,
            details={"forecast_bps": round(mean * BPS, 3), "low_bps": round(low, 3),
                     "high_bps": round(high, 3),
                     "ar_params": [round(float(p), 6) for p in result.params],
                     "last_price": float(s.close[-1]), "venue": s.venue},
        )]


def _ols_path(returns: np.ndarray, lags: int, horizon: int) -> float:
    """The AR(lags) point forecast of the cumulative return, by least squares (the same
    estimate as ``AutoReg``'s, without its set-up cost): a screen before the full fit."""
    n = len(returns)
    x = np.column_stack([np.ones(n - lags)] + [returns[lags - k - 1:n - k - 1]
                                               for k in range(lags)])
    beta = np.linalg.lstsq(x, returns[lags:], rcond=None)[0]
    history = list(returns[-lags:])
    total = 0.0
    for _ in range(horizon):
        nxt = float(beta[0] + sum(beta[k + 1] * history[-k - 1] for k in range(lags)))
        history.append(nxt)
        total += nxt
    return total
