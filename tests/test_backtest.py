"""The backtest: deterministic, its PnL reconciles with its trade list, its fills are the V2
integer math, its decisions go through the live risk engine; and a strategy fed the same
candles decides the same in a backtest and in a paper session on the dev chain."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dexpilot.analysis.models import analyse, default_models
from dexpilot.backtest import (
    Backtest,
    BacktestConfig,
    BacktestResult,
    default_limits,
    pnl_raw,
    realised_pnl,
    run_backtest,
    summarise,
    synthetic,
)
from dexpilot.backtest.fills import token_for
from dexpilot.risk.checks import quote_value
from dexpilot.strategy.statistical import StatisticalStrategy
from dexpilot.venues.v2_math import get_amount_out


@pytest.fixture(scope="module")
def market() -> pl.DataFrame:
    return synthetic.market({
        "WETH/USDC": synthetic.mean_reverting(900, 1, vol=0.004, phi=0.9),
        "WBTC/USDC": synthetic.random_walk(900, 5, start=60_000.0),
    })


@pytest.fixture(scope="module")
def result(market: pl.DataFrame) -> BacktestResult:
    return run_backtest(market)


def test_backtest_trades_and_is_deterministic(market: pl.DataFrame,
                                              result: BacktestResult) -> None:
    assert len(result.trades) >= 10, "a mean-reverting market must be traded"
    again = run_backtest(market)
    assert again.trades == result.trades
    assert again.equity_quote == result.equity_quote
    assert again.final_balances == result.final_balances
    assert summarise(again) == summarise(result)


def test_pnl_reconciles_with_the_trade_list(result: BacktestResult) -> None:
    balances = dict(result.initial_balances)
    native = result.initial_native_wei
    for trade in result.trades:
        native -= trade.gas_wei
        if trade.status == "filled":
            balances[trade.token_in] -= trade.amount_in
            balances[trade.token_out] = balances.get(trade.token_out, 0) + trade.amount_out
    assert balances == result.final_balances and native == result.final_native_wei

    def value(held: dict[str, int], native_wei: int, prices: dict[str, float],
              native_price: float) -> int:
        total = sum(quote_value(raw, result.tokens[s], prices[s], result.quote)
                    for s, raw in held.items())
        from decimal import Decimal
        return total + int(Decimal(native_wei) * Decimal(repr(native_price))
                           * 10**result.quote.decimals / 10**18)

    start = value(result.initial_balances, result.initial_native_wei, result.initial_prices,
                  result.initial_native_price)
    end = value(balances, native, result.final_prices, result.final_native_price)
    assert pnl_raw(result) == end - start
    report = summarise(result)
    assert report.pnl_quote == pytest.approx((end - start) / 10**result.quote.decimals)
    assert report.trade_count == len(result.trades)
    assert report.gas_quote == pytest.approx(
        sum(t.gas_quote for t in result.trades) / 10**result.quote.decimals)
    realised = [r for _, r in realised_pnl(result) if r is not None]
    assert report.closing_trades == len(realised) > 0
    assert report.win_rate == sum(r > 0 for r in realised) / len(realised)
    assert 0 <= report.max_drawdown_pct < 100 and math.isfinite(report.sharpe)
    assert len(result.exposure_quote) == len(result.equity_quote) == len(result.ts)


def test_fills_are_the_v2_integer_math_on_the_candle_pool(result: BacktestResult) -> None:
    """A step's first fill equals ``get_amount_out`` on a pool centred on that step's close."""
    cfg = result.config
    seen = set()
    checked = 0
    for trade in result.trades:
        if trade.step in seen or trade.status != "filled":
            seen.add(trade.step)
            continue
        seen.add(trade.step)
        base = result.tokens[trade.pair.partition("/")[0]]
        step_close = _close_at(trade.pair, trade.step)
        r1 = cfg.depth_quote * 10**result.quote.decimals
        r0 = int(r1 / step_close / 10**result.quote.decimals * 10**base.decimals)
        reserves = (r1, r0) if trade.side == "buy" else (r0, r1)
        assert trade.amount_out == get_amount_out(trade.amount_in, *reserves, cfg.fee_ppm)
        assert trade.amount_out == trade.expected_out and trade.min_out < trade.amount_out
        checked += 1
    assert checked >= 5


def _close_at(pair: str, step: int) -> float:
    market = synthetic.market({
        "WETH/USDC": synthetic.mean_reverting(900, 1, vol=0.004, phi=0.9),
        "WBTC/USDC": synthetic.random_walk(900, 5, start=60_000.0),
    })
    closes = market.filter(pl.col("pair") == pair).get_column("close").to_numpy()
    return float(closes[step])


def test_orders_go_through_the_live_risk_engine(market: pl.DataFrame) -> None:
    """The risk engine holds a 100 USDC per-trade limit while the strategy sizes against the
    default 5,000: every order must be refused by ``max_trade`` and nothing trades."""
    quote = token_for("USDC")
    tight = default_limits(quote, ["USDC", "WETH", "WBTC"], "ETH").model_copy(
        update={"max_trade_quote": 100 * 10**6})
    engine = Backtest(market, BacktestConfig(limits=tight))
    engine.limits = default_limits(quote, ["USDC", "WETH", "WBTC"], "ETH")  # strategy sizing
    outcome = engine.run()
    assert outcome.trades == []
    assert outcome.rejections.get("max_trade", 0) >= 1, outcome.rejections


def test_bad_input_is_refused_clearly() -> None:
    frame = synthetic.candles_frame("WETH/DAI", synthetic.random_walk(300, 1))
    with pytest.raises(ValueError, match="quoted in USDC"):
        Backtest(frame)
    short = synthetic.candles_frame("WETH/USDC", synthetic.random_walk(100, 1))
    with pytest.raises(ValueError, match="warm-up"):
        Backtest(short)


def test_cli_backtest_run_prints_the_report(synthetic_candles_file: Path) -> None:
    from dexpilot_cli.main import app

    out = CliRunner().invoke(app, ["backtest", "run", str(synthetic_candles_file),
                                   "--trades", "3"])
    assert out.exit_code == 0, out.output
    for metric in ("PnL", "Sharpe", "max drawdown", "win rate", "trades", "exposure"):
        assert metric in out.output
    missing = CliRunner().invoke(app, ["backtest", "run", "/nonexistent.parquet"])
    assert missing.exit_code == 2 and "no candle file" in missing.output


def test_cli_analysis_run_lists_signals(synthetic_candles_file: Path) -> None:
    from dexpilot_cli.main import app

    out = CliRunner().invoke(app, ["analysis", "run", str(synthetic_candles_file)])
    assert out.exit_code == 0, out.output
    assert "mean_reversion" in out.output and "WBTC/USDC" in out.output


# -- paper / backtest parity on the dev chain ------------------------------------------------

@pytest.mark.chain
def test_same_candles_same_decisions_in_backtest_and_paper_session(test_env: object) -> None:
    from dexpilot.config import AppConfig
    from dexpilot.ledger import OrderStatus
    from dexpilot.market.valuation import quote_prices
    from dexpilot.money import format_units
    from dexpilot.trading.cycle import (
        TradingRuntime,
        balances_by_symbol,
        check_risk,
        check_tokens,
        current_gas_price,
        execute_approved,
        plan_orders,
        read_snapshot,
        route_orders,
    )

    assert isinstance(test_env, AppConfig)
    config = test_env.model_copy(update={
        "strategy": test_env.strategy.model_copy(update={"mode": "paper"})})
    rt = TradingRuntime.build(config, None)
    try:
        snapshot = read_snapshot(rt)
        price = quote_prices(snapshot, rt.quote, rt.hub)["WETH"]
        closes = synthetic.mean_reverting(400, 1, vol=0.004, phi=0.8)
        closes[-1] *= math.exp(0.03)  # WETH stretched up: a sell
        closes = closes * (price / closes[-1])
        closes[-1] = price  # the last candle is the chain's price
        candles = synthetic.candles_frame("WETH/USDC", closes)
        signals = analyse(candles, default_models()).signals
        assert [s.model for s in signals] == ["mean_reversion"]

        # Paper session: the trading cycle's own steps on the dev chain.
        rt.strategy = StatisticalStrategy()
        gas = current_gas_price(rt)
        paper_intents = plan_orders(rt, signals, snapshot, gas, "paper")
        routed = route_orders(rt, paper_intents, snapshot, gas)
        checked = check_risk(rt, routed, snapshot, gas, check_tokens(rt, routed, snapshot))
        assert all(o.decision is not None and o.decision.approved for o in checked), \
            [o.decision for o in checked]
        executions = execute_approved(rt, checked, snapshot)
        assert executions and all(e.status is OrderStatus.SIMULATED for e in executions), \
            executions

        # Backtest: the same candles, wallet A's balances, the same limits; decide on the last.
        held = balances_by_symbol(rt, snapshot)
        tokens = {t.symbol: t.decimals for t in (x.token() for x in config.tokens)}
        bt = run_backtest(candles, BacktestConfig(
            decimals=tokens, warmup=len(closes) - 1, limits=config.risk,
            initial_balances={s: format_units(v, tokens[s]) for s, v in held.items()
                              if s in ("USDC", "WETH")}),
            strategy=StatisticalStrategy())
    finally:
        rt.close()
    backtest_intents = bt.steps[-1].intents
    assert bt.steps[-1].decisions and all(d.approved for d in bt.steps[-1].decisions)

    def shape(intents: list) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
        return [(i.details["pair"], i.details["side"], i.token_in.symbol, i.token_out.symbol)
                for i in intents]

    assert paper_intents and shape(paper_intents) == shape(backtest_intents)
    assert shape(paper_intents)[0][1] == "sell"
    for paper, backtest in zip(paper_intents, backtest_intents, strict=True):
        assert abs(paper.amount_in - backtest.amount_in) <= max(1, paper.amount_in // 10**9)
