"""Statistical models over candles: each answers ``Signal``s or a reasoned ``NoSignal``."""

from dexpilot.analysis.models.base import (
    Model,
    ModelResult,
    NoSignal,
    PriceSeries,
    SingleSeriesModel,
    data_problem,
    series_from_frame,
)
from dexpilot.analysis.models.forecast import ForecastModel
from dexpilot.analysis.models.mean_reversion import MeanReversionModel
from dexpilot.analysis.models.pairs import PairsModel
from dexpilot.analysis.models.runner import (
    AnalysisResult,
    analyse,
    default_models,
    pairs_models,
    run_on_series,
    split_series,
)

__all__ = [
    "AnalysisResult",
    "ForecastModel",
    "MeanReversionModel",
    "Model",
    "ModelResult",
    "NoSignal",
    "PairsModel",
    "PriceSeries",
    "SingleSeriesModel",
    "analyse",
    "data_problem",
    "default_models",
    "pairs_models",
    "run_on_series",
    "series_from_frame",
    "split_series",
]
