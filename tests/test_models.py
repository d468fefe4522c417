"""The candle models: each signals on data built to hold its pattern, stays silent on a random
walk, and refuses bad data with a reason (fixed seeds throughout)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from dexpilot.analysis.models import (
    ForecastModel,
    MeanReversionModel,
    NoSignal,
    PairsModel,
    analyse,
    default_models,
)
from dexpilot.analysis.signal import Side, Signal
from dexpilot.backtest import synthetic
from dexpilot.backtest.data import normalise_candles

PAIR = "WETH/USDC"
SEEDS = range(10)


def _signals(result: list[Signal] | NoSignal) -> list[Signal]:
    assert not isinstance(result, NoSignal), result
    return result


def _stretched_ou(seed: int, jump: float) -> pl.DataFrame:
    closes = synthetic.mean_reverting(400, seed, vol=0.004, phi=0.8)
    closes[-1] *= math.exp(jump)
    return synthetic.candles_frame(PAIR, closes)


# -- mean reversion ------------------------------------------------------------------------

@pytest.mark.parametrize("jump,side", [(0.03, Side.SELL), (-0.03, Side.BUY)])
def test_mean_reversion_signals_a_stretched_stationary_price(jump: float, side: Side) -> None:
    [signal] = _signals(MeanReversionModel().evaluate(_stretched_ou(1, jump)))
    assert signal.side is side and signal.pair == PAIR and signal.model == "mean_reversion"
    assert signal.edge_bps > 0 and 0 < signal.confidence <= 1 and signal.horizon_s > 0
    assert signal.details["adf_pvalue"] < 0.05 and abs(signal.details["zscore"]) >= 2
    assert signal.inputs_from is not None and signal.inputs_to is not None
    assert (signal.inputs_to - signal.inputs_from).total_seconds() == (240 - 1) * 60


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_reversion_silent_on_a_random_walk_even_when_stretched(seed: int) -> None:
    closes = synthetic.random_walk(400, seed)
    closes[-1] *= math.exp(0.03)  # a far excursion that a random walk has no reason to undo
    # entry_z=0: every z-score passes, so the stationarity test alone must keep it silent.
    result = MeanReversionModel(entry_z=0.0).evaluate(synthetic.candles_frame(PAIR, closes))
    assert isinstance(result, NoSignal), result
    assert "not stationary" in result.reason


def test_mean_reversion_needs_the_move_to_pay_costs() -> None:
    result = MeanReversionModel(cost_bps=5_000).evaluate(_stretched_ou(1, 0.03))
    assert isinstance(result, NoSignal) and "does not pay costs" in result.reason


# -- forecast ------------------------------------------------------------------------------

@pytest.mark.parametrize("shock,side", [(0.01, Side.BUY), (-0.01, Side.SELL)])
def test_forecast_signals_momentum_that_beats_costs(shock: float, side: Side) -> None:
    closes = synthetic.momentum(400, 2, phi=0.8)
    closes[-1] = closes[-2] * math.exp(shock)
    [signal] = _signals(ForecastModel().evaluate(synthetic.candles_frame(PAIR, closes)))
    assert signal.side is side and signal.model == "ar_forecast"
    assert signal.details["low_bps"] > 60 if side is Side.BUY else \
        signal.details["high_bps"] < -60
    assert signal.edge_bps > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_forecast_silent_on_a_random_walk(seed: int) -> None:
    closes = synthetic.random_walk(400, seed)
    closes[-1] = closes[-2] * math.exp(0.01)  # the same last shock, without memory
    result = ForecastModel().evaluate(synthetic.candles_frame(PAIR, closes))
    assert isinstance(result, NoSignal), result
    assert "does not clear costs" in result.reason


# -- pairs ---------------------------------------------------------------------------------

def test_pairs_signals_a_stretched_cointegrated_spread() -> None:
    y, x = synthetic.cointegrated(400, 3, beta=1.0)
    y[-1] *= math.exp(0.03)  # y rich against x
    frame = synthetic.market({"WETH/USDC": y, "WBTC/USDC": x})
    signals = _signals(PairsModel("WETH/USDC", "WBTC/USDC").evaluate(frame))
    sides = {s.pair: s.side for s in signals}
    assert sides == {"WETH/USDC": Side.SELL, "WBTC/USDC": Side.BUY}
    assert all(s.details["coint_pvalue"] < 0.05 for s in signals)
    assert abs(signals[0].details["hedge_ratio"] - 1.0) < 0.2
    assert signals[1].details["notional_weight"] == pytest.approx(
        abs(signals[1].details["hedge_ratio"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_pairs_silent_on_independent_random_walks(seed: int) -> None:
    y = synthetic.random_walk(400, seed)
    x = synthetic.random_walk(400, seed + 1000, start=60_000.0)
    frame = synthetic.market({"WETH/USDC": y, "WBTC/USDC": x})
    # Force the spread far out so the cointegration test, not the z-score, must decide.
    model = PairsModel("WETH/USDC", "WBTC/USDC", entry_z=0.0)
    result = model.evaluate(frame)
    assert isinstance(result, NoSignal), result
    assert "not cointegrated" in result.reason


# -- bad data ------------------------------------------------------------------------------

def _frame_with(closes: np.ndarray) -> pl.DataFrame:
    return synthetic.candles_frame(PAIR, closes)


@pytest.mark.parametrize("model", [MeanReversionModel(), ForecastModel()],
                         ids=["mean_reversion", "forecast"])
@pytest.mark.parametrize("case,expected", [
    ("short", "too little data"),
    ("nan", "bad prices"),
    ("zero", "bad prices"),
    ("constant", "constant price"),
    ("gap", "gap in the data"),
    ("duplicate", "timestamps repeat"),
    ("missing_column", "lack column"),
    ("two_venues", "venues"),
])
def test_bad_data_gives_no_signal_with_a_reason(model: MeanReversionModel | ForecastModel,
                                                 case: str, expected: str) -> None:
    closes = _stretched_ou(1, 0.05).get_column("close").to_numpy().copy()
    frame = _frame_with(closes)
    if case == "short":
        frame = frame.head(100)
    elif case == "nan":
        closes[300] = np.nan
        frame = _frame_with(closes)
    elif case == "zero":
        closes[350] = 0.0
        frame = _frame_with(closes)
    elif case == "constant":
        frame = _frame_with(np.full(400, 3000.0))
    elif case == "gap":
        frame = pl.concat([frame.head(300), frame.tail(90)])
    elif case == "duplicate":
        frame = pl.concat([frame.head(300), frame.slice(299, 101)])
    elif case == "missing_column":
        frame = frame.drop("close")
    elif case == "two_venues":
        frame = pl.concat([frame.with_columns(pl.lit("uniswap-v2").alias("venue")),
                           frame.with_columns(pl.lit("sushiswap-v2").alias("venue"))])
    result = model.evaluate(frame)
    assert isinstance(result, NoSignal), result
    assert expected in result.reason, result.reason


def test_pairs_refuses_bad_leg_with_the_leg_named() -> None:
    y, x = synthetic.cointegrated(400, 3)
    x[200] = np.nan
    result = PairsModel("WETH/USDC", "WBTC/USDC").evaluate(
        synthetic.market({"WETH/USDC": y, "WBTC/USDC": x}))
    assert isinstance(result, NoSignal) and result.reason.startswith("WBTC/USDC: bad prices")


def test_analyse_runs_every_model_on_every_pair_and_keeps_the_refusals() -> None:
    frame = pl.concat([_stretched_ou(1, 0.03),
                       synthetic.candles_frame("WBTC/USDC", synthetic.random_walk(400, 4,
                                                                                  start=6e4)),
                       synthetic.candles_frame("UNI/USDC", np.full(400, 7.0))])
    result = analyse(frame, default_models())
    assert [(s.pair, s.model) for s in result.signals] == [(PAIR, "mean_reversion")]
    silent = {(n.pair, n.model): n.reason for n in result.silent}
    assert len(silent) == 5
    assert "constant price" in silent[("UNI/USDC", "mean_reversion")]


def test_models_read_a_user_csv(tmp_path: pytest.TempPathFactory) -> None:
    frame = _stretched_ou(1, 0.03)
    plain = frame.select("ts", "pair", "close").with_columns(
        pl.col("ts").dt.epoch("s").alias("ts"))
    result = MeanReversionModel().evaluate(normalise_candles(plain))
    assert _signals(result)[0].side is Side.SELL
