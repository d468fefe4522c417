"""Mean reversion: trade a pair's price back towards its rolling mean, when it does revert.

The log close is compared with its rolling mean over ``window`` candles (a z-score). A price is
only expected to come back if the series is stationary over the ``lookback``: an augmented
Dickey-Fuller test (``statsmodels.tsa.stattools.adfuller``) must reject a unit root at
``adf_alpha``; a random walk does not, so the model stays silent on one however far it wanders.
The edge is the distance back to the mean in bps less ``cost_bps`` (the round trip's LP fees
and impact); the horizon is twice the deviation's half-life (AR(1)).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from statsmodels.tsa.stattools import adfuller

from dexpilot.analysis.models.base import ModelResult, NoSignal, PriceSeries, SingleSeriesModel
from dexpilot.analysis.models.stats import BPS, clip01, half_life, zscore_last
from dexpilot.analysis.signal import Side, Signal


class MeanReversionModel(SingleSeriesModel):
    name: ClassVar[str] = "mean_reversion"

    def __init__(self, *, lookback: int = 240, window: int = 60, entry_z: float = 2.0,
                 adf_alpha: float = 0.05, adf_maxlag: int = 1, cost_bps: float = 60.0) -> None:
        if window < 5 or lookback < window + 1:
            raise ValueError("need window >= 5 and lookback > window")
        self.lookback, self.window, self.entry_z = lookback, window, entry_z
        self.adf_alpha, self.adf_maxlag, self.cost_bps = adf_alpha, adf_maxlag, cost_bps
        self.min_rows = lookback

    def fit(self, series: PriceSeries) -> ModelResult:
        s = series.tail(self.lookback)
        logp = np.log(s.close)
        z, mean, _std = zscore_last(logp, self.window)
        if abs(z) < self.entry_z:
            return NoSignal(self.name, s.pair, f"z-score {z:+.2f} inside +/-{self.entry_z:g}")
        adf = adfuller(logp, maxlag=self.adf_maxlag, autolag=None, regression="c",
                       result_object=True)
        pvalue = float(adf.pvalue)
        if not pvalue < self.adf_alpha:
            return NoSignal(self.name, s.pair, f"not stationary: ADF p-value {pvalue:.3f} >= "
                                               f"{self.adf_alpha:g} (z-score {z:+.2f})")
        deviation_bps = abs(float(logp[-1]) - mean) * BPS
        edge = deviation_bps - self.cost_bps
        if edge <= 0:
            return NoSignal(self.name, s.pair, f"deviation {deviation_bps:.1f} bps does not pay "
                                               f"costs of {self.cost_bps:g} bps")
        hl = half_life(logp)
        horizon_candles = min(2.0 * hl, float(self.window)) if math.isfinite(hl) else self.window
        side = Side.SELL if z > 0 else Side.BUY
        confidence = clip01((1.0 - pvalue) * min(1.0, abs(z) / (2.0 * self.entry_z)))
        return [Signal(
            model=self.name, pair=s.pair, side=side, edge_bps=edge, confidence=confidence,
            horizon_s=max(1.0, horizon_candles) * s.interval_s(),
            inputs_from=s.start, inputs_to=s.end,
            details={"zscore": round(z, 4), "adf_pvalue": round(pvalue, 6),
                     "half_life_candles": round(hl, 3) if math.isfinite(hl) else -1.0,
                     "mean_price": math.exp(mean), "last_price": float(s.close[-1]),
                     "venue": s.venue},
        )]
