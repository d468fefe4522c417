"""Profit sweep (seed diagram 9): wallet A's value above its working capital goes to wallet B.

Value is wallet A's token holdings at the snapshot's prices, in raw quote units (gas money is
not counted: it is an operating cost, not profit). Only the quote token is transferred, never
more than wallet A holds of it, and nothing moves until the excess passes the configured
threshold. Wallet B is an address only: this module never needs its key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dexpilot.money import Token
from dexpilot.risk.checks import quote_value


@dataclass(frozen=True, slots=True)
class SweepPlan:
    token: Token
    amount: int  # raw units of the quote token to send to wallet B
    to: str
    wallet_value_quote: int
    working_capital_quote: int


def wallet_value_quote(balances: Mapping[str, int], tokens: Sequence[Token],
                       prices: Mapping[str, float], quote: Token) -> int:
    """Raw quote units: each holding valued at ``prices`` (whole quote per whole token)."""
    total = 0
    for token in tokens:
        held = balances.get(token.symbol, 0)
        if held:
            total += held if token == quote else quote_value(held, token,
                                                              prices.get(token.symbol, 0.0),
                                                              quote)
    return total


def plan_sweep(*, balances: Mapping[str, int], tokens: Sequence[Token],
               prices: Mapping[str, float], quote: Token, cold_wallet: str,
               working_capital_quote: int, threshold_quote: int) -> SweepPlan | None:
    value = wallet_value_quote(balances, tokens, prices, quote)
    excess = value - working_capital_quote
    if excess <= 0 or excess < threshold_quote:
        return None
    amount = min(excess, balances.get(quote.symbol, 0))
    if amount <= 0:
        return None
    return SweepPlan(quote, amount, cold_wallet, value, working_capital_quote)
