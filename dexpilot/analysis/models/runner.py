"""Run a set of models over a candle frame of many pairs: every signal, every refusal.

The frame is split by pair with polars once; single-series models run per pair, pairs models
per configured pair of pairs. Nothing here does I/O: the analysis flow stores the results and
the backtest feeds them to a strategy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from dexpilot.analysis.models.base import Model, NoSignal, PriceSeries, series_from_frame
from dexpilot.analysis.models.forecast import ForecastModel
from dexpilot.analysis.models.mean_reversion import MeanReversionModel
from dexpilot.analysis.models.pairs import PairsModel
from dexpilot.analysis.signal import Signal


@dataclass
class AnalysisResult:
    signals: list[Signal] = field(default_factory=list)
    silent: list[NoSignal] = field(default_factory=list)

    def extend(self, other: AnalysisResult) -> None:
        self.signals.extend(other.signals)
        self.silent.extend(other.silent)

    def add(self, result: list[Signal] | NoSignal) -> None:
        if isinstance(result, NoSignal):
            self.silent.append(result)
        else:
            self.signals.extend(result)


def default_models(*, cost_bps: float = 60.0, lookback: int = 240) -> list[Model]:
    """The single-series models with one cost assumption (pairs models are per pair of pairs)."""
    return [MeanReversionModel(cost_bps=cost_bps, lookback=lookback),
            ForecastModel(cost_bps=cost_bps, lookback=lookback)]


def pairs_models(pair_trades: Iterable[tuple[str, str]], *, cost_bps: float = 60.0,
                 lookback: int = 240) -> list[Model]:
    return [PairsModel(y, x, cost_bps=cost_bps, lookback=lookback) for y, x in pair_trades]


def split_series(candles: pl.DataFrame) -> dict[str, PriceSeries | str]:
    """One close series per pair (the cross-venue aggregate where there is one)."""
    out: dict[str, PriceSeries | str] = {}
    if "pair" not in candles.columns:
        return out
    for frame in candles.partition_by("pair", maintain_order=True):
        pair = str(frame.get_column("pair")[0])
        out[pair] = series_from_frame(frame, pair)
    return out


def run_on_series(series: dict[str, PriceSeries | str], models: Sequence[Model]
                  ) -> AnalysisResult:
    """Every model on the series it reads; a pair without a usable series is a refusal."""
    result = AnalysisResult()
    for model in models:
        if isinstance(model, PairsModel):
            wanted = [series.get(model.pair_y), series.get(model.pair_x)]
            problems = [w for w in wanted if not isinstance(w, PriceSeries)]
            if problems:
                why = "; ".join(str(p) if p else "no candles" for p in problems)
                result.silent.append(NoSignal(model.name, model.label, why))
                continue
            result.add(model.run([w for w in wanted if isinstance(w, PriceSeries)]))
            continue
        for pair, one in series.items():
            if isinstance(one, str):
                result.silent.append(NoSignal(model.name, pair, one))
            else:
                result.add(model.run([one]))
    return result


def analyse(candles: pl.DataFrame, models: Sequence[Model]) -> AnalysisResult:
    return run_on_series(split_series(candles), models)
