"""The venue interface: quote exact-in, build the swap, name the approval spender, estimate gas.

Every DEX (a Uniswap V2 fork, Uniswap V3, an aggregator API) is one ``Venue``. Quotes carry
raw integer amounts; a swap built from a quote is always bounded by ``min_amount_out`` and a
deadline: the caller computes both (slippage limit, latest block time), never the venue, and
``build_swap`` refuses a bound of 0 (``check_swap_bounds``).

Failures keep their kinds (``dexpilot.errors``): a venue that cannot be reached raises
``NetworkError``; one that answers wrongly or has no pool for a pair raises ``ApiError``
(``UnsupportedPair`` for the latter), so the router switches to another venue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import is_address

from dexpilot.errors import ApiError
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
    # Execution price vs mid price, LP fees included; float, for ranking and risk checks only.
    price_impact_bps: float = 0.0
    block_number: int | None = None
    # Venue-specific data needed to build the swap (an aggregator's prepared transaction).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # Addresses of the pools the swap goes through, in order (empty for an aggregator, whose
    # route is its own): legs of one split never share a pool, so each leg's quote holds.
    pools: tuple[str, ...] = ()

    @property
    def hops(self) -> int:
        return len(self.path) - 1


@dataclass(frozen=True, slots=True)
class SwapTx:
    """An unsigned transaction: the executor adds nonce, fees and gas, signs and sends."""

    to: str
    data: str
    value: int
    gas_limit: int
    spender: str  # who needs the allowance of token_in


class UnsupportedPair(ApiError):
    """The venue has no pool (or route) for this pair: quote it elsewhere."""


class Venue(ABC):
    name: str
    kind: str = "venue"

    @abstractmethod
    def quote_exact_in(
        self, token_in: Token, token_out: Token, amount_in: int,
        snapshot: MarketSnapshot | None = None,
    ) -> Quote:
        """How much ``token_out`` selling exactly ``amount_in`` of ``token_in`` gets now.

        Venues whose output follows from pool state (Uniswap V2) compute it from ``snapshot``
        with the router's own integer math and no round trip; others ask the chain or an API.
        """

    def quote_candidates(
        self, token_in: Token, token_out: Token, amount_in: int,
        snapshot: MarketSnapshot | None = None,
    ) -> list[Quote]:
        """Every way this venue can do the trade (one quote per path / fee tier), so a router
        can weigh output against gas. Venues with a single answer return it alone."""
        return [self.quote_exact_in(token_in, token_out, amount_in, snapshot)]

    @abstractmethod
    def build_swap(self, quote: Quote, *, recipient: str, min_amount_out: int,
                   deadline: int) -> SwapTx:
        """The transaction that executes ``quote``, reverting below ``min_amount_out``."""

    @abstractmethod
    def approval_spender(self, quote: Quote) -> str:
        """The address that must be allowed to pull ``quote.amount_in`` of ``token_in``."""

    def gas_estimate(self, quote: Quote) -> int:
        return quote.gas_estimate


def best_quote(quotes: Sequence[Quote]) -> Quote:
    """The quote with the most output; fewer hops on a tie (less gas, fewer pools touched)."""
    return max(quotes, key=lambda q: (q.amount_out, -q.hops))


def check_amount_in(amount_in: object) -> int:
    """A sell amount must be a positive int of raw units (no floats, no bools)."""
    if not isinstance(amount_in, int) or isinstance(amount_in, bool):
        raise TypeError(f"amount_in must be an int of raw units, got {type(amount_in).__name__}")
    if amount_in <= 0:
        raise ValueError(f"amount_in must be > 0, got {amount_in}")
    return amount_in


def check_swap_bounds(venue: Venue, quote: Quote, *, recipient: str, min_amount_out: int,
                      deadline: int) -> None:
    """The checks every ``build_swap`` makes before encoding anything.

    A swap is never unbounded: ``min_amount_out`` must be a positive int (never 0) and the
    deadline a positive unix time; the quote must come from this venue and the recipient must
    be an address. Bad input raises ``ValueError``/``TypeError`` and builds nothing.
    """
    if quote.venue != venue.name:
        raise ValueError(f"quote is from venue {quote.venue!r}, not {venue.name!r}")
    for name, value in (("min_amount_out", min_amount_out), ("deadline", deadline)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if min_amount_out <= 0:
        raise ValueError(
            f"min_amount_out must be > 0 (got {min_amount_out}): a swap is always bounded by "
            "the quote minus the allowed slippage"
        )
    if deadline <= 0:
        raise ValueError(f"deadline must be a positive unix timestamp, got {deadline}")
    if not isinstance(recipient, str) or not is_address(recipient):
        raise ValueError(f"recipient {recipient!r} is not an Ethereum address")
    if quote.amount_in <= 0:
        raise ValueError(f"quote sells {quote.amount_in}: nothing to swap")
