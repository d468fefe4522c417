"""The venue interface: quote exact-in, build the swap, name the approval spender, estimate gas.

Every DEX (a Uniswap V2 fork, Uniswap V3, an aggregator API) is one ``Venue``. Quotes carry
raw integer amounts; a swap built from a quote is always bounded by ``min_amount_out`` and a
deadline: the caller computes both (slippage limit, latest block time), never the venue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from dexpilot.market.pools import MarketSnapshot
from dexpilot.money import Token


@dataclass(frozen=True, slots=True)
class Quote:
    venue: str
    token_in: Token
    token_out: Token
    amount_in: int
    amount_out: int
    gas_estimate: int
    path: tuple[Token, ...]  # token_in, [hops...], token_out
    fees_ppm: tuple[int, ...] = ()  # per hop, where the venue has fee tiers
    price_impact_bps: float = 0.0
    block_number: int | None = None
    # Venue-specific data needed to build the swap (an aggregator's prepared transaction).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class SwapTx:
    """An unsigned transaction: the executor adds nonce, fees and gas, signs and sends."""

    to: str
    data: str
    value: int
    gas_limit: int
    spender: str  # who needs the allowance of token_in


class Venue(ABC):
    name: str

    @abstractmethod
    def quote_exact_in(
        self, token_in: Token, token_out: Token, amount_in: int,
        snapshot: MarketSnapshot | None = None,
    ) -> Quote:
        """How much ``token_out`` selling exactly ``amount_in`` of ``token_in`` gets now.

        Venues whose output follows from pool state (Uniswap V2) compute it from ``snapshot``
        with the router's own integer math and no round trip; others ask the chain or an API.
        """

    @abstractmethod
    def build_swap(self, quote: Quote, *, recipient: str, min_amount_out: int,
                   deadline: int) -> SwapTx:
        """The transaction that executes ``quote``, reverting below ``min_amount_out``."""

    @abstractmethod
    def approval_spender(self, quote: Quote) -> str:
        """The address that must be allowed to pull ``quote.amount_in`` of ``token_in``."""

    def gas_estimate(self, quote: Quote) -> int:
        return quote.gas_estimate
