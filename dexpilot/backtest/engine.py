"""The backtest: candles replayed through the live decision path, step by step.

At every candle (after a warm-up long enough for the models) the engine does what a trading
cycle does, with the market simulated instead of read:

1. the pools are re-centred on the candle's close (``fills.PoolBook``), as a snapshot;
2. the models run on the candles known so far (no look-ahead) -> ``Signal``s;
3. the strategy (the same ``Strategy`` object live trading uses) turns them into intents;
4. the router (``dexpilot.routing.Router`` over a real ``UniswapV2Venue``) routes each intent;
5. the ``RiskEngine`` decides every proposal, built as the trading cycle builds it;
6. approved orders fill with the V2 integer math on the simulated pools; gas is charged.

Everything is deterministic: the same candles and settings give the same trades to the wei.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import polars as pl

from dexpilot.analysis.models.base import Model, PriceSeries, series_from_frame
from dexpilot.analysis.models.runner import default_models, pairs_models, run_on_series
from dexpilot.analysis.signal import Signal
from dexpilot.backtest.fills import PoolBook, token_for
from dexpilot.config import RiskLimits
from dexpilot.errors import ApiError
from dexpilot.ledger.pnl import Flow, realized_pnl
from dexpilot.money import Token, to_raw
from dexpilot.risk import RiskContext, RiskDecision, RiskEngine, TradeProposal
from dexpilot.risk.checks import quote_value
from dexpilot.routing.router import Route, Router
from dexpilot.strategy.base import Strategy, StrategyContext
from dexpilot.strategy.intent import OrderIntent
from dexpilot.strategy.statistical import StatisticalStrategy
from dexpilot.trading.proposal import proposal_for

WALLET = "0x" + "a" * 40
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class BacktestConfig:
    """Amounts in whole tokens (strings or ints, read exactly); ``None`` picks a default.

    ``initial_balances`` defaults to ``initial_quote`` of the quote token plus
    ``initial_base_value`` (in quote) of each base token at its first traded close.
    ``native_price_quote`` defaults to the close of ``WETH/<quote>`` when present.
    """

    quote: str = "USDC"
    venue: str | None = None
    decimals: Mapping[str, int] = field(default_factory=dict)
    initial_balances: Mapping[str, str | int] | None = None
    initial_quote: int = 100_000
    initial_base_value: int = 10_000
    depth_quote: int = 2_000_000  # quote-side reserve of each simulated pool, whole units
    fee_ppm: int = 3_000
    gas_price_wei: int = 20 * 10**9
    native_symbol: str = "ETH"
    native_balance: str = "10"  # whole native tokens for gas
    native_price_quote: float | None = None
    limits: RiskLimits | None = None
    signal_every: int = 1
    warmup: int | None = None
    cost_bps: float = 60.0
    lookback: int = 240
    pair_trades: tuple[tuple[str, str], ...] = ()  # (y, x) pairs for the pairs model


@dataclass(frozen=True, slots=True)
class Trade:
    step: int
    ts: datetime
    client_order_id: str
    pair: str
    side: str  # "buy" / "sell" of the pair's base token
    token_in: str
    amount_in: int
    token_out: str
    amount_out: int  # 0 when the swap reverted
    expected_out: int
    min_out: int
    gas_wei: int
    gas_quote: int  # gas valued in raw quote units at the step's native price
    status: str  # "filled" / "reverted"
    model: str


@dataclass
class StepDecision:
    """What the decision path produced at one step: intents and the risk engine's answers."""

    step: int
    intents: list[OrderIntent]
    decisions: list[RiskDecision]
    signals: int


@dataclass
class BacktestResult:
    config: BacktestConfig
    pairs: list[str]
    quote: Token
    tokens: dict[str, Token]
    interval_s: float
    ts: list[datetime] = field(default_factory=list)
    equity_quote: list[int] = field(default_factory=list)  # raw quote, marked at the close
    exposure_quote: list[int] = field(default_factory=list)  # non-quote holdings, raw quote
    trades: list[Trade] = field(default_factory=list)
    steps: list[StepDecision] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    signals: int = 0
    initial_balances: dict[str, int] = field(default_factory=dict)
    final_balances: dict[str, int] = field(default_factory=dict)
    initial_native_wei: int = 0
    final_native_wei: int = 0
    initial_prices: dict[str, float] = field(default_factory=dict)
    final_prices: dict[str, float] = field(default_factory=dict)
    initial_native_price: float = 0.0
    final_native_price: float = 0.0
    candles: int = 0
    start_equity_quote: int = 0  # before the first step's trades, raw quote


def default_limits(quote: Token, symbols: Sequence[str], native_symbol: str) -> RiskLimits:
    unit = 10**quote.decimals
    return RiskLimits(
        max_trade_quote=5_000 * unit, max_daily_volume_quote=1_000_000 * unit,
        working_capital_quote=10_000_000 * unit, daily_loss_limit_quote=10_000 * unit,
        max_exposure_per_token_quote=1_000_000 * unit,
        max_total_exposure_quote=5_000_000 * unit, max_slippage_bps=50,
        warn_price_impact_bps=100, max_price_impact_bps=300, max_reference_deviation_bps=300,
        max_gas_price_wei=200 * 10**9, min_gas_balance_wei=10**16,
        token_allowlist=sorted(set(symbols)),
    )


class Backtest:
    """One backtest over a candle frame. ``run()`` replays it; build a new one to run again."""

    def __init__(self, candles: pl.DataFrame, config: BacktestConfig | None = None, *,
                 strategy: Strategy | None = None, models: Sequence[Model] | None = None
                 ) -> None:
        self.config = config or BacktestConfig()
        cfg = self.config
        self.series = aligned_series(candles, cfg.venue)
        self.pairs = sorted(self.series)
        if not self.pairs:
            raise ValueError("no candles to backtest")
        self.quote = token_for(cfg.quote, cfg.decimals)
        tokens: dict[str, Token] = {cfg.quote: self.quote}
        pair_tokens: dict[str, tuple[Token, Token]] = {}
        for pair in self.pairs:
            base_symbol, _, quote_symbol = pair.partition("/")
            if quote_symbol != cfg.quote:
                raise ValueError(f"{pair}: every pair must be quoted in {cfg.quote}")
            tokens[base_symbol] = token_for(base_symbol, cfg.decimals)
            pair_tokens[pair] = (tokens[base_symbol], self.quote)
        self.tokens = tokens
        self.models = list(models) if models is not None else [
            *default_models(cost_bps=cfg.cost_bps, lookback=cfg.lookback),
            *pairs_models(cfg.pair_trades, cost_bps=cfg.cost_bps, lookback=cfg.lookback)]
        self.strategy = strategy or StatisticalStrategy()
        self.book = PoolBook.build(pair_tokens, cfg.depth_quote * 10**self.quote.decimals,
                                   cfg.fee_ppm)
        hub = tokens.get("WETH")
        self.native = hub or token_for(cfg.native_symbol)
        self.router = Router({"v2": self.book.venue()}, native=self.native)
        limits = cfg.limits or default_limits(self.quote, list(tokens), cfg.native_symbol)
        self.limits = limits
        self.risk = RiskEngine(limits, self.quote, tokens.values(),
                               native_symbol=cfg.native_symbol)
        n = len(self.series[self.pairs[0]])
        self.n = n
        self.warmup = cfg.warmup if cfg.warmup is not None else max(
            (getattr(m, "min_rows", 0) for m in self.models), default=0)
        if self.warmup >= n:
            raise ValueError(f"{n} candles do not cover the warm-up of {self.warmup}")

    # -- helpers ------------------------------------------------------------------------------
    def _closes(self, i: int) -> dict[str, float]:
        return {pair: float(self.series[pair].close[i]) for pair in self.pairs}

    def _prices(self, closes: Mapping[str, float]) -> dict[str, float]:
        prices = {self.quote.symbol: 1.0}
        for pair, close in closes.items():
            prices[pair.partition("/")[0]] = close
        return prices

    def _native_price(self, prices: Mapping[str, float]) -> float:
        if self.config.native_price_quote is not None:
            return self.config.native_price_quote
        return prices.get("WETH", 3000.0)

    def _equity(self, balances: Mapping[str, int], native_wei: int,
                prices: Mapping[str, float]) -> tuple[int, int]:
        exposure = sum(quote_value(raw, self.tokens[s], prices[s], self.quote)
                       for s, raw in balances.items() if s != self.quote.symbol and raw)
        native = int(Decimal(native_wei) * Decimal(repr(self._native_price(prices)))
                     * 10**self.quote.decimals / 10**18)
        return balances.get(self.quote.symbol, 0) + exposure + native, exposure

    def _realized_today(self, trades: Sequence[Trade], prices: Mapping[str, float]) -> int:
        """The daily loss limit's input, defined once for live and backtest
        (``dexpilot.ledger.pnl.realized_pnl``): the day's fills at this step's prices, less the
        gas of every swap of the day (a reverted one moved no tokens but paid its gas)."""
        flows = [Flow(self.tokens[t.token_in], t.amount_in, self.tokens[t.token_out],
                      t.amount_out) for t in trades if t.status == "filled"]
        return realized_pnl(flows, prices, self.quote, gas_wei=sum(t.gas_wei for t in trades),
                            native=self.native,
                            native_price=self._native_price(prices)).realized_quote

    def _initial_balances(self, prices: Mapping[str, float]) -> dict[str, int]:
        cfg = self.config
        if cfg.initial_balances is not None:
            return {s: to_raw(str(v), self.tokens[s].decimals)
                    for s, v in cfg.initial_balances.items()}
        out = {self.quote.symbol: cfg.initial_quote * 10**self.quote.decimals}
        for symbol, token in self.tokens.items():
            if symbol != self.quote.symbol:
                out[symbol] = int(cfg.initial_base_value / prices[symbol] * 10**token.decimals)
        return out

    # -- the replay ----------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        cfg = self.config
        first = self.series[self.pairs[0]]
        result = BacktestResult(cfg, self.pairs, self.quote, self.tokens, first.interval_s())
        start_prices = self._prices(self._closes(self.warmup))
        balances = self._initial_balances(start_prices)
        native_wei = to_raw(cfg.native_balance, 18)
        result.initial_balances, result.initial_native_wei = dict(balances), native_wei
        result.initial_prices = start_prices
        result.initial_native_price = self._native_price(start_prices)
        result.start_equity_quote = self._equity(balances, native_wei, start_prices)[0]
        day, day_volume = -1, 0
        day_trades: list[Trade] = []
        total = self.n - self.warmup
        for i in range(self.warmup, self.n):
            ts_us = int(first.ts_us[i])
            closes = self._closes(i)
            prices = self._prices(closes)
            if ts_us // DAY_US != day:
                day, day_volume, day_trades = ts_us // DAY_US, 0, []
            self.book.recentre(closes)
            snapshot = self.book.snapshot(i, ts_us // 1_000_000)
            signals: list[Signal] = []
            if (i - self.warmup) % max(cfg.signal_every, 1) == 0:
                known = {pair: s.upto(i + 1) for pair, s in self.series.items()}
                signals = run_on_series(dict(known), self.models).signals
            result.signals += len(signals)
            context = StrategyContext(
                snapshot=snapshot, wallet=WALLET, quote_token=self.quote,
                balances=dict(balances), max_trade_quote=self.limits.max_trade_quote,
                gas_price_wei=cfg.gas_price_wei,
                native_price_quote=self._native_price(prices), prices=prices,
                cycle_id=f"bt{i}")
            intents = self.strategy.orders(signals, context)
            step = StepDecision(i, intents, [], len(signals))
            if intents:
                risk_context = RiskContext(
                    balances=dict(balances), prices=prices, traded_today_quote=day_volume,
                    realized_pnl_today_quote=self._realized_today(day_trades, prices),
                    gas_price_wei=cfg.gas_price_wei, native_balance_wei=native_wei,
                    reference_prices=prices)
                routed: list[tuple[OrderIntent, Route]] = []
                for intent in intents:
                    try:
                        routed.append((intent, self.router.route(
                            intent, snapshot, gas_price_wei=cfg.gas_price_wei)))
                    except ApiError:
                        result.rejections["route"] = result.rejections.get("route", 0) + 1
                proposals = [proposal_for(intent, route, prices, self.quote,
                                          self.limits.max_slippage_bps, cfg.gas_price_wei,
                                          snapshot) for intent, route in routed]
                decisions = self.risk.evaluate_batch(proposals, risk_context)
                step.decisions = decisions
                for (intent, route), proposal, decision in zip(routed, proposals, decisions,
                                                               strict=True):
                    if not decision.approved:
                        result.rejections[decision.rule] = \
                            result.rejections.get(decision.rule, 0) + 1
                        continue
                    trade = self._fill(i, ts_us, intent, route, proposal, prices)
                    result.trades.append(trade)
                    day_trades.append(trade)
                    native_wei -= trade.gas_wei
                    balances[trade.token_in] -= trade.amount_in if trade.amount_out else 0
                    balances[trade.token_out] = balances.get(trade.token_out, 0) \
                        + trade.amount_out
                    if trade.amount_out:
                        day_volume += proposal.amount_in_quote
            result.steps.append(step)
            equity, exposure = self._equity(balances, native_wei, prices)
            result.ts.append(datetime.fromtimestamp(ts_us / 1e6, UTC))
            result.equity_quote.append(equity)
            result.exposure_quote.append(exposure)
            if progress is not None:
                progress(i - self.warmup + 1, total)
        result.final_balances, result.final_native_wei = dict(balances), native_wei
        result.final_prices = self._prices(self._closes(self.n - 1))
        result.final_native_price = self._native_price(result.final_prices)
        result.candles = total * len(self.pairs)
        return result

    def _fill(self, i: int, ts_us: int, intent: OrderIntent, route: Route,
              proposal: TradeProposal, prices: Mapping[str, float]) -> Trade:
        saved = dict(self.book.reserves)
        out = 0
        for leg in route.legs:
            amount = leg.amount_in
            for a, b in zip(leg.path, leg.path[1:], strict=False):
                amount = self.book.fill(self.book.pool_between(a, b), a, amount)
            out += amount
        status = "filled"
        if out < proposal.min_out:  # the router's amountOutMin: the swap reverts
            self.book.reserves = saved
            out, status = 0, "reverted"
        gas_wei = route.gas_estimate * self.config.gas_price_wei
        gas_quote = int(Decimal(gas_wei) * Decimal(repr(self._native_price(prices)))
                        * 10**self.quote.decimals / 10**18)
        base = intent.token_out if intent.token_in == self.quote else intent.token_in
        side = "buy" if intent.token_in == self.quote else "sell"
        return Trade(
            step=i, ts=datetime.fromtimestamp(ts_us / 1e6, UTC),
            client_order_id=intent.client_order_id, pair=f"{base.symbol}/{self.quote.symbol}",
            side=side, token_in=intent.token_in.symbol, amount_in=intent.amount_in,
            token_out=intent.token_out.symbol, amount_out=out,
            expected_out=route.amount_out, min_out=proposal.min_out, gas_wei=gas_wei,
            gas_quote=gas_quote, status=status, model=str(intent.details.get("model", "")))


def aligned_series(candles: pl.DataFrame, venue: str | None = None) -> dict[str, PriceSeries]:
    """One close series per pair, on the timestamps every pair shares."""
    if candles.height == 0:
        return {}
    pairs = sorted(str(p) for p in candles.get_column("pair").unique().to_list())
    per_pair: dict[str, PriceSeries] = {}
    for pair in pairs:
        got = series_from_frame(candles, pair, venue)
        if isinstance(got, str):
            raise ValueError(f"{pair}: {got}")
        per_pair[pair] = got
    common = per_pair[pairs[0]].ts_us
    for s in per_pair.values():
        common = np.intersect1d(common, s.ts_us, assume_unique=True)
    out = {}
    for pair, s in per_pair.items():
        keep = np.isin(s.ts_us, common)
        out[pair] = PriceSeries(pair, s.venue, s.ts_us[keep], s.close[keep])
    return out


def run_backtest(candles: pl.DataFrame, config: BacktestConfig | None = None, *,
                 strategy: Strategy | None = None, models: Sequence[Model] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    return Backtest(candles, config, strategy=strategy, models=models).run(progress)
