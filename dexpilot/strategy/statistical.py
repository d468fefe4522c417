"""Statistical strategies: signals of the candle models -> target inventories -> order intents.

Wallet A holds an inventory of each token (its *baseline*, taken from the balances the first
time the strategy runs, or given). A model's signal on ``BASE/QUOTE`` moves the pair's target
away from the baseline for the signal's horizon: a buy targets ``baseline + size`` of the base
token, a sell ``baseline - size`` (never below zero: spot only, no shorting). When the horizon
has passed without a fresh signal, the target returns to the baseline. Each call proposes the
orders that bring holdings to their targets, skipping moves smaller than ``rebalance_fraction``
of a full size (no churn). The router decides where to trade, the risk engine whether.

Size in quote units: ``max_trade_quote * size_fraction * confidence * notional_weight``
(pairs legs carry their hedge ratio as weight), capped 2 % under the per-trade limit since the
risk engine values orders at its own prices. Amounts are raw integers; prices only size.

The same object runs in the backtest and in a paper or live session, so both make the same
decisions from the same signals, balances and prices. It keeps state (targets and their
expiry, the baseline): use one instance per session or backtest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dexpilot.analysis.models.forecast import ForecastModel
from dexpilot.analysis.models.mean_reversion import MeanReversionModel
from dexpilot.analysis.models.pairs import PairsModel
from dexpilot.analysis.signal import Side, Signal
from dexpilot.money import Token
from dexpilot.strategy.base import Strategy, StrategyContext
from dexpilot.strategy.intent import OrderIntent

STATISTICAL_MODELS = (MeanReversionModel.name, ForecastModel.name, PairsModel.name)
LIMIT_HEADROOM = 0.98


@dataclass(frozen=True, slots=True)
class Target:
    pair: str
    side: Side
    size_quote: int  # raw quote units away from the baseline
    expires_at: float  # unix seconds (the snapshot's clock)
    model: str
    edge_bps: float


class StatisticalStrategy(Strategy):
    name = "statistical"

    def __init__(self, *, models: Collection[str] = STATISTICAL_MODELS,
                 min_edge_bps: float = 0.0, min_confidence: float = 0.3,
                 size_fraction: float = 0.5, rebalance_fraction: float = 0.25,
                 baseline: Mapping[str, int] | None = None) -> None:
        if not 0.0 < size_fraction <= 1.0 or not 0.0 <= rebalance_fraction <= 1.0:
            raise ValueError("size_fraction must be in (0, 1], rebalance_fraction in [0, 1]")
        self.models = frozenset(models)
        self.min_edge_bps, self.min_confidence = min_edge_bps, min_confidence
        self.size_fraction, self.rebalance_fraction = size_fraction, rebalance_fraction
        self.baseline: dict[str, int] | None = dict(baseline) if baseline is not None else None
        self.targets: dict[str, Target] = {}

    # -- signals -> targets ------------------------------------------------------------------
    def _accept(self, signal: Signal) -> bool:
        return (signal.model in self.models and signal.edge_bps > self.min_edge_bps
                and signal.confidence >= self.min_confidence)

    def update_targets(self, signals: Sequence[Signal], context: StrategyContext) -> None:
        now = float(context.snapshot.block_timestamp)
        best: dict[str, Signal] = {}
        for signal in signals:
            if not self._accept(signal):
                continue
            held = best.get(signal.pair)
            score = signal.edge_bps * signal.confidence
            if held is None or score > held.edge_bps * held.confidence:
                best[signal.pair] = signal
        for pair, signal in best.items():
            weight = float(signal.details.get("notional_weight", 1.0))
            size = context.max_trade_quote * self.size_fraction * signal.confidence * weight
            size = min(size, context.max_trade_quote * LIMIT_HEADROOM)
            self.targets[pair] = Target(pair, signal.side, int(size), now + signal.horizon_s,
                                        signal.model, signal.edge_bps)
        for pair in [p for p, t in self.targets.items() if t.expires_at < now]:
            del self.targets[pair]

    # -- targets -> orders -------------------------------------------------------------------
    def orders(self, signals: Sequence[Signal], context: StrategyContext) -> list[OrderIntent]:
        if self.baseline is None:
            self.baseline = dict(context.balances)
        self.update_targets(signals, context)
        tokens = _tokens_by_symbol(context)
        pairs = sorted(set(self.targets) | self._off_baseline_pairs(context, tokens))
        intents: list[OrderIntent] = []
        for pair in pairs:
            intent = self._order_for(pair, context, tokens)
            if intent is not None:
                intents.append(intent)
        return intents

    def _off_baseline_pairs(self, context: StrategyContext, tokens: Mapping[str, Token]
                            ) -> set[str]:
        """Pairs whose base holding differs from the baseline: they go back to it."""
        assert self.baseline is not None
        quote = context.quote_token.symbol
        out = set()
        for symbol in tokens:
            if symbol == quote or symbol not in self.baseline:
                continue
            if context.balances.get(symbol, 0) != self.baseline[symbol]:
                out.add(f"{symbol}/{quote}")
        return out

    def _order_for(self, pair: str, context: StrategyContext, tokens: Mapping[str, Token]
                   ) -> OrderIntent | None:
        assert self.baseline is not None
        base_symbol, _, quote_symbol = pair.partition("/")
        quote = context.quote_token
        base = tokens.get(base_symbol)
        price = context.prices.get(base_symbol, 0.0)
        if quote_symbol != quote.symbol or base is None or price <= 0:
            return None
        unit = price * 10**quote.decimals / 10**base.decimals  # raw quote per raw base
        baseline = self.baseline.get(base_symbol, 0)
        target = self.targets.get(pair)
        goal = baseline
        if target is not None:
            move = int(target.size_quote / unit)
            goal = baseline + move if target.side is Side.BUY else max(0, baseline - move)
        held = context.balances.get(base_symbol, 0)
        delta = goal - held
        full = context.max_trade_quote * self.size_fraction
        if delta == 0 or abs(delta) * unit < self.rebalance_fraction * full:
            return None
        cap_quote = int(context.max_trade_quote * LIMIT_HEADROOM)
        why = (f"{pair}: {target.model} {target.side.value}, edge {target.edge_bps:.1f} bps"
               if target else f"{pair}: signal expired, back to the baseline inventory")
        details = {"pair": pair, "goal": str(goal), "held": str(held),
                   "model": target.model if target else "", "price": price}
        cycle = context.cycle_id
        if delta > 0:
            amount = min(int(delta * unit), cap_quote, context.balances.get(quote.symbol, 0))
            if amount <= 0:
                return None
            return OrderIntent(f"{cycle}-stat-{base_symbol}-buy", self.name, quote, base,
                               amount, reason=why, details={**details, "side": "buy"})
        amount = min(-delta, int(cap_quote / unit), held)
        if amount <= 0:
            return None
        return OrderIntent(f"{cycle}-stat-{base_symbol}-sell", self.name, base, quote, amount,
                           reason=why, details={**details, "side": "sell"})


def _tokens_by_symbol(context: StrategyContext) -> dict[str, Token]:
    out: dict[str, Token] = {}
    for snap in context.snapshot.pools:
        out.setdefault(snap.pool.token0.symbol, snap.pool.token0)
        out.setdefault(snap.pool.token1.symbol, snap.pool.token1)
    return out
