"""Pairs: two prices that move together (cointegrated), traded when their spread stretches.

Engle-Granger: ``coint`` (statsmodels) tests the two log prices over ``lookback`` for
cointegration; an ``OLS`` of ``log y`` on ``log x`` gives the hedge ratio ``b``; the spread
``log y - b log x - a`` is z-scored over ``window``. Past ``entry_z``, the rich leg is sold and
the cheap one bought, the ``x`` leg sized ``|b|`` times the ``y`` leg's notional
(``details["notional_weight"]``). Two independent random walks are not cointegrated: silence.
The edge is the spread's distance to its mean less both legs' ``cost_bps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import polars as pl
from statsmodels.regression.linear_model import OLS
from statsmodels.tsa.stattools import coint

from dexpilot.analysis.models.base import (
    Model,
    ModelResult,
    NoSignal,
    PriceSeries,
    data_problem,
    series_from_frame,
)
from dexpilot.analysis.models.stats import BPS, clip01, half_life, zscore_last
from dexpilot.analysis.signal import Side, Signal


class PairsModel(Model):
    name: ClassVar[str] = "pairs"

    def __init__(self, pair_y: str, pair_x: str, *, lookback: int = 240, window: int = 60,
                 entry_z: float = 2.0, coint_alpha: float = 0.05, coint_maxlag: int = 1,
                 cost_bps: float = 60.0) -> None:
        if pair_y == pair_x:
            raise ValueError("a pairs model needs two different pairs")
        if window < 5 or lookback < window + 1:
            raise ValueError("need window >= 5 and lookback > window")
        self.pair_y, self.pair_x = pair_y, pair_x
        self.lookback, self.window, self.entry_z = lookback, window, entry_z
        self.coint_alpha, self.coint_maxlag, self.cost_bps = coint_alpha, coint_maxlag, cost_bps
        self.min_rows = lookback

    @property
    def label(self) -> str:
        return f"{self.pair_y}~{self.pair_x}"

    def series(self, candles: pl.DataFrame) -> Sequence[PriceSeries] | NoSignal:
        out = []
        for pair in (self.pair_y, self.pair_x):
            got = series_from_frame(candles, pair)
            if isinstance(got, str):
                return NoSignal(self.name, self.label, got)
            out.append(got)
        return out

    def run(self, series: Sequence[PriceSeries]) -> ModelResult:
        if len(series) != 2:
            return NoSignal(self.name, self.label, f"expected two series, got {len(series)}")
        y, x = series
        for one in (y, x):
            problem = data_problem(one, self.min_rows)
            if problem is not None:
                return NoSignal(self.name, self.label, f"{one.pair}: {problem}")
        common, iy, ix = np.intersect1d(y.ts_us, x.ts_us, assume_unique=True,
                                        return_indices=True)
        if len(common) < self.lookback:
            return NoSignal(self.name, self.label, f"too little common data: {len(common)} "
                                                   f"shared candles, need {self.lookback}")
        iy, ix = iy[-self.lookback:], ix[-self.lookback:]
        ly, lx = np.log(y.close[iy]), np.log(x.close[ix])
        fit = OLS(ly, np.column_stack([np.ones(len(lx)), lx])).fit()
        a, b = (float(v) for v in fit.params)
        spread = ly - a - b * lx
        z, mean, _std = zscore_last(spread, self.window)
        if abs(z) < self.entry_z:
            return NoSignal(self.name, self.label, f"spread z-score {z:+.2f} inside "
                                                   f"+/-{self.entry_z:g} (hedge ratio {b:.3f})")
        result = coint(ly, lx, trend="c", maxlag=self.coint_maxlag, autolag=None)
        pvalue = float(result[1])
        if not pvalue < self.coint_alpha:
            return NoSignal(self.name, self.label, f"not cointegrated: Engle-Granger p-value "
                                                   f"{pvalue:.3f} >= {self.coint_alpha:g}")
        deviation_bps = abs(float(spread[-1]) - mean) * BPS
        costs = self.cost_bps * (1.0 + abs(b))
        edge = deviation_bps - costs
        if edge <= 0:
            return NoSignal(self.name, self.label, f"spread deviation {deviation_bps:.1f} bps "
                                                   f"does not pay costs of {costs:.1f} bps")
        hl = half_life(spread)
        horizon_candles = min(2.0 * hl, float(self.window)) if math.isfinite(hl) else self.window
        interval = y.interval_s()
        side_y = Side.SELL if z > 0 else Side.BUY
        opposite = Side.BUY if side_y is Side.SELL else Side.SELL
        side_x = opposite if b > 0 else side_y
        confidence = clip01((1.0 - pvalue) * min(1.0, abs(z) / (2.0 * self.entry_z)))
        common_series = PriceSeries(y.pair, y.venue, y.ts_us[iy], y.close[iy])
        base = {"pair_trade": self.label, "hedge_ratio": round(b, 6), "zscore": round(z, 4),
                "coint_pvalue": round(pvalue, 6), "intercept": round(a, 6)}
        return [
            Signal(model=self.name, pair=pair, side=side, edge_bps=edge, confidence=confidence,
                   horizon_s=max(1.0, horizon_candles) * interval,
                   inputs_from=common_series.start, inputs_to=common_series.end,
                   details={**base, "leg": leg, "notional_weight": weight,
                            "last_price": last})
            for pair, side, leg, weight, last in (
                (y.pair, side_y, "y", 1.0, float(y.close[iy[-1]])),
                (x.pair, side_x, "x", round(abs(b), 6), float(x.close[ix[-1]])),
            )
        ]
