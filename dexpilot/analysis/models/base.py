"""The model interface, the candle schema the models read, and the data checks they share.

A model reads candles (the schema of ``dexpilot.market.candles``: ``ts`` UTC, ``pair``,
``venue``, ``pool``, ``open/high/low/close`` as the base token's price in the quote token,
volumes, ``trades``) and answers either a list of ``Signal``s or a ``NoSignal`` saying why it
stays silent. Too little data, gaps, NaN or non-positive prices and constant prices are refused
with a reason before any statistics run: a fit on bad data is worse than no fit.

Models work on numpy arrays (``PriceSeries``) so the backtest can slide a window over a long
history without building a DataFrame per step; ``Model.evaluate`` takes a polars DataFrame
and does the conversion once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl

from dexpilot.analysis.signal import Signal
from dexpilot.market.candles import ALL_VENUES

REQUIRED_COLUMNS = ("ts", "pair", "venue", "close")

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]

MAX_GAP_FACTOR = 1.5  # a step longer than 1.5 candle intervals is a gap


@dataclass(frozen=True, slots=True)
class NoSignal:
    """A model's reasoned silence: ``reason`` says what it saw (bad data, no pattern)."""

    model: str
    pair: str
    reason: str


ModelResult: TypeAlias = list[Signal] | NoSignal


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """One pair's closes on one venue, oldest first; ``ts_us`` are microseconds since epoch."""

    pair: str
    venue: str
    ts_us: IntArray
    close: FloatArray

    def __len__(self) -> int:
        return len(self.close)

    def tail(self, n: int) -> PriceSeries:
        return PriceSeries(self.pair, self.venue, self.ts_us[-n:], self.close[-n:])

    def upto(self, end: int) -> PriceSeries:
        """The first ``end`` candles (what was known at the close of candle ``end - 1``)."""
        return PriceSeries(self.pair, self.venue, self.ts_us[:end], self.close[:end])

    @property
    def start(self) -> datetime:
        return _dt(int(self.ts_us[0]))

    @property
    def end(self) -> datetime:
        return _dt(int(self.ts_us[-1]))

    def interval_s(self) -> float:
        if len(self.ts_us) < 2:
            return 0.0
        return float(np.median(np.diff(self.ts_us))) / 1e6


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


def series_from_frame(candles: pl.DataFrame, pair: str | None = None,
                      venue: str | None = None) -> PriceSeries | str:
    """The close series of one pair (and venue) from a candle frame, or why there is none.

    ``venue`` defaults to the cross-venue aggregate ``"all"`` when present, else to the only
    venue in the frame; a frame with several venues and no choice is refused.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in candles.columns]
    if missing:
        return f"candles lack column(s) {', '.join(missing)}"
    if pair is None:
        pairs = candles.get_column("pair").unique().to_list()
        if len(pairs) != 1:
            return f"expected one pair, got {len(pairs)}: {sorted(map(str, pairs))[:5]}"
        pair = str(pairs[0])
    frame = candles.filter(pl.col("pair") == pair)
    if frame.height == 0:
        return f"no candles for {pair}"
    venues = frame.get_column("venue").unique().to_list()
    if venue is None:
        if ALL_VENUES in venues:
            venue = ALL_VENUES
        elif len(venues) == 1:
            venue = str(venues[0])
        else:
            return f"{pair} has candles from {len(venues)} venues and none aggregated: choose one"
    frame = frame.filter(pl.col("venue") == venue).sort("ts")
    if frame.height == 0:
        return f"no candles for {pair} on {venue}"
    ts = frame.get_column("ts")
    if not isinstance(ts.dtype, pl.Datetime):
        return f"ts must be a Datetime column, got {ts.dtype}"
    ts_us = ts.dt.cast_time_unit("us").dt.epoch("us").to_numpy().astype(np.int64)
    close = frame.get_column("close").cast(pl.Float64).fill_null(np.nan).to_numpy()
    return PriceSeries(pair, venue, ts_us, np.asarray(close, dtype=np.float64))


def data_problem(series: PriceSeries, min_rows: int,
                 max_gap_factor: float = MAX_GAP_FACTOR) -> str | None:
    """Why ``series`` is unfit for a fit, or ``None`` when it is fine."""
    n = len(series)
    if n < min_rows:
        return f"too little data: {n} candles, the model needs at least {min_rows}"
    close = series.close
    bad = ~np.isfinite(close) | (close <= 0)
    if bad.any():
        at = _dt(int(series.ts_us[int(np.argmax(bad))])).isoformat()
        return f"bad prices: {int(bad.sum())} NaN, infinite or non-positive close(s), first at {at}"
    steps = np.diff(series.ts_us)
    if (steps <= 0).any():
        return "timestamps repeat or go backwards"
    interval = float(np.median(steps))
    gaps = steps > interval * max_gap_factor
    if gaps.any():
        i = int(np.argmax(gaps))
        return (f"gap in the data: {int(gaps.sum())} missing stretch(es), first after "
                f"{_dt(int(series.ts_us[i])).isoformat()} ({steps[i] / 1e6:.0f} s for a "
                f"{interval / 1e6:.0f} s interval)")
    if float(np.ptp(np.log(close))) < 1e-9:
        return f"constant price {close[-1]:g} over {n} candles: nothing to model"
    return None


class Model(ABC):
    """A statistical model: candles in, ``Signal``s or a reasoned ``NoSignal`` out."""

    name: ClassVar[str]
    min_rows: int

    def evaluate(self, candles: pl.DataFrame) -> ModelResult:
        """Run the model on a frame holding the pair(s) it needs."""
        got = self.series(candles)
        if isinstance(got, NoSignal):
            return got
        return self.run(got)

    @abstractmethod
    def series(self, candles: pl.DataFrame) -> Sequence[PriceSeries] | NoSignal:
        """The price series this model reads from ``candles``."""

    @abstractmethod
    def run(self, series: Sequence[PriceSeries]) -> ModelResult:
        """The model on already extracted series (validated here, not by the caller)."""


class SingleSeriesModel(Model):
    """A model of one pair's price (mean reversion, forecast)."""

    def series(self, candles: pl.DataFrame) -> Sequence[PriceSeries] | NoSignal:
        got = series_from_frame(candles)
        if isinstance(got, str):
            pair = candles.get_column("pair")[0] if "pair" in candles.columns and \
                candles.height else "?"
            return NoSignal(self.name, str(pair), got)
        return [got]

    def run(self, series: Sequence[PriceSeries]) -> ModelResult:
        if len(series) != 1:
            return NoSignal(self.name, "?", f"expected one series, got {len(series)}")
        one = series[0]
        problem = data_problem(one, self.min_rows)
        if problem is not None:
            return NoSignal(self.name, one.pair, problem)
        return self.fit(one)

    @abstractmethod
    def fit(self, series: PriceSeries) -> ModelResult:
        """The statistics, on validated data."""
