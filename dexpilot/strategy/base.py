"""The strategy interface: signals in, order intents out (with sizing).

Signal generation (``dexpilot.analysis``) and execution (``dexpilot.execution``) stay apart:
a strategy only decides *what* to trade and how much; the router decides where, the risk
engine whether, the executor how.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dexpilot.analysis.signal import Signal
from dexpilot.market.pools import MarketSnapshot
from dexpilot.money import Token
from dexpilot.strategy.intent import OrderIntent


@dataclass(frozen=True, slots=True)
class StrategyContext:
    snapshot: MarketSnapshot
    wallet: str
    quote_token: Token
    balances: Mapping[str, int]  # token symbol -> raw amount held by wallet A
    max_trade_quote: int  # raw quote units: a strategy never proposes more per order
    gas_price_wei: int
    native_price_quote: float  # whole quote tokens per whole native token
    prices: Mapping[str, float] = field(default_factory=dict)  # whole quote per whole token
    cycle_id: str = "cycle"
    params: Mapping[str, object] = field(default_factory=dict)


class Strategy(ABC):
    name: str

    @abstractmethod
    def orders(self, signals: Sequence[Signal], context: StrategyContext) -> list[OrderIntent]:
        """The orders this strategy wants now; an empty list is a valid answer."""
