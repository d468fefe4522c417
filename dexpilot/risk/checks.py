"""Risk checks: small plug-ins that each judge one trade proposal against one rule.

The seed's risk control (diagram 5) passes a trade request through fund limits, then slippage,
then exposure; any rejection is recorded and never reaches the chain. Here each rule is one
``RiskCheck`` with a stable ``name`` (used as the ``rule`` of a stored decision and as a metric
label) and a ``group`` that fixes where it runs:

``control``      kill_switch, quarantine, token_safety
``fund``         allowlist, max_trade, daily_volume, working_capital, balance, daily_loss
``slippage``     min_out, price_impact, edge
``exposure``     token_exposure, total_exposure
``operational``  gas_price, gas_balance, reference_price

A check answers pass, warn (with a reason) or reject (with a reason and details); it never does
I/O: everything it needs is in the ``TradeProposal`` (the trade, built by the trading cycle from
a route) and the ``RiskContext`` (balances, today's counters, prices, gas, the kill switch).

Money is raw integers. Limits are raw units of the strategy's quote token (``RiskLimits``); a
token amount is turned into quote units with ``quote_value``, which multiplies by the price as an
exact fraction and floors, so no limit is ever compared with a float. Prices (whole quote tokens
per whole token) may be floats: they value holdings, they are never sent to a contract.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import ClassVar, TypeAlias

from dexpilot.config import RiskLimits
from dexpilot.market.reference import PriceReference, ReferenceSource, SourceKind
from dexpilot.money import Token, format_units
from dexpilot.risk.kill_switch import KillSwitch
from dexpilot.risk.token_safety import TokenVerdict
from dexpilot.strategy.intent import OrderIntent

BPS = 10_000

# A value in ``details``: JSON-safe scalars only. Raw amounts are stored as decimal strings
# (a uint256 does not fit a JSON number that every reader parses exactly).
Detail: TypeAlias = int | float | str

CONTROL = "control"
FUND = "fund"
SLIPPAGE = "slippage"
EXPOSURE = "exposure"
OPERATIONAL = "operational"
GROUP_ORDER: tuple[str, ...] = (CONTROL, FUND, SLIPPAGE, EXPOSURE, OPERATIONAL)


# -- input validation ------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object, what: str, *, signed: bool = False) -> int:
    if not _is_int(value):
        raise TypeError(f"{what} must be an int (raw units), got {type(value).__name__}")
    assert isinstance(value, int)
    if not signed and value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def _price(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return number


def _prices(values: object, what: str) -> Mapping[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} must be a mapping of token symbol -> price")
    out: dict[str, float] = {}
    for symbol, price in values.items():
        if not isinstance(symbol, str) or not symbol:
            raise TypeError(f"{what}: keys must be token symbols, got {symbol!r}")
        out[symbol] = _price(price, f"{what}[{symbol!r}]")
    return out


def same_token(a: Token, b: Token) -> bool:
    """Same symbol and address (addresses compared case-insensitively)."""
    return a.symbol == b.symbol and a.address.lower() == b.address.lower()


def _token_table(tokens: Iterable[Token]) -> dict[str, Token]:
    table: dict[str, Token] = {}
    for token in tokens:
        if not isinstance(token, Token):
            raise TypeError(f"tokens must be Tokens, got {type(token).__name__}")
        if token.symbol in table and table[token.symbol] != token:
            raise ValueError(f"tokens: two different tokens named {token.symbol!r}")
        table[token.symbol] = token
    return table


# -- the two pieces of money math shared with the executor and the trading cycle ---------------


def min_amount_out(expected_out: int, slippage_bps: int) -> int:
    """The swap's ``amountOutMin``: ``expected_out`` less ``slippage_bps``, floored.

    Integer math only: ``expected_out * (10_000 - slippage_bps) // 10_000``. The result is never
    0: if ``expected_out`` is too small for the bound to stay positive (or is 0), ``ValueError``
    is raised, because a swap bounded by 0 is an unbounded swap. The executor and the risk check
    both call this, so the slippage bound is computed in one place.
    """
    _int(expected_out, "expected_out")
    _int(slippage_bps, "slippage_bps")
    if slippage_bps >= BPS:
        raise ValueError(f"slippage_bps must be below {BPS} (100 %), got {slippage_bps}")
    bound = expected_out * (BPS - slippage_bps) // BPS
    if bound == 0:
        raise ValueError(
            f"expected_out {expected_out} is too small to bound with {slippage_bps} bps of "
            f"slippage: the minimum output would be 0"
        )
    return bound


def quote_value(raw: int, token: Token, price: float | Decimal, quote_token: Token) -> int:
    """``raw`` units of ``token`` in raw units of ``quote_token``, floored.

    ``price`` is whole quote tokens per whole ``token`` (e.g. 3000.0 USDC per WETH). It is taken
    as the exact decimal it prints as and multiplied as a fraction, so the result is exact up to
    the final floor. The quote token itself is worth ``raw`` (its price is ignored).
    """
    _int(raw, "raw amount")
    if same_token(token, quote_token):
        return raw
    _price(price, f"price of {token.symbol}")
    exact = Fraction(price) if isinstance(price, Decimal | int) else Fraction(Decimal(repr(price)))
    num, den = exact.numerator, exact.denominator
    quote_scale: int = 10**quote_token.decimals
    token_scale: int = 10**token.decimals
    return raw * num * quote_scale // (den * token_scale)


def _units(raw: int, token: Token) -> str:
    return f"{format_units(raw, token.decimals)} {token.symbol}"


def _gwei(wei: int) -> str:
    return f"{format_units(wei, 9)} gwei"


# -- what the checks look at -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeProposal:
    """One order intent as routed: what it sells, what it expects, how it is bounded.

    The trading cycle builds it from a route: ``expected_out`` is the route's total output,
    ``min_out`` the swap's ``amountOutMin`` (use ``min_amount_out``), ``price_impact_bps`` the
    route's worst (or size-weighted) impact, ``venues`` the venues it trades on, ``gas_limit``
    the total gas of its transactions. ``amount_in_quote`` and ``expected_out_quote`` value the
    input and the expected output in raw quote units (``quote_value`` at reference prices);
    for the quote token itself they equal the raw amounts.

    ``gas_price_wei`` is the max fee per gas the transaction will be sent with (``None``: the
    context's current gas price). ``pool_price`` is the pre-trade spot price of ``token_in`` in
    whole ``token_out`` per whole ``token_in``, read from the pool(s) the route trades on
    (``PoolSnapshot.price_of``); without it the reference check uses the route's effective price
    (``expected_out`` / ``amount_in``), which includes fees and impact and is therefore stricter.
    ``reference``: the prices of ``token_in`` in ``token_out`` from sources independent of the
    pool(s) the route trades on (``dexpilot.market.reference.reference_for``); ``None``: the
    context's ``reference_prices`` stand in (the backtest, whose candles are their own source).
    """

    intent: OrderIntent
    expected_out: int
    min_out: int
    amount_in_quote: int
    expected_out_quote: int
    price_impact_bps: float = 0.0
    venues: tuple[str, ...] = ()
    gas_limit: int = 0
    gas_price_wei: int | None = None
    pool_price: float | None = None
    reference: PriceReference | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.intent, OrderIntent):
            raise TypeError(f"intent must be an OrderIntent, got {type(self.intent).__name__}")
        who = f"proposal {self.intent.client_order_id}"
        for name in ("expected_out", "min_out", "amount_in_quote", "expected_out_quote"):
            _int(getattr(self, name), f"{who}: {name}")
        if not _is_int(self.gas_limit) or self.gas_limit <= 0:
            raise ValueError(f"{who}: gas_limit must be a positive int, got {self.gas_limit!r}")
        if self.gas_price_wei is not None:
            _int(self.gas_price_wei, f"{who}: gas_price_wei")
        if isinstance(self.price_impact_bps, bool) or not isinstance(
            self.price_impact_bps, int | float
        ):
            raise TypeError(f"{who}: price_impact_bps must be a number")
        if not math.isfinite(self.price_impact_bps):
            raise ValueError(f"{who}: price_impact_bps must be finite, got {self.price_impact_bps}")
        if self.pool_price is not None:
            _price(self.pool_price, f"{who}: pool_price")
        if self.reference is not None:
            if not isinstance(self.reference, PriceReference):
                raise TypeError(f"{who}: reference must be a PriceReference")
            priced = (self.reference.base, self.reference.counter)
            if priced != (self.intent.token_in.symbol, self.intent.token_out.symbol):
                raise ValueError(
                    f"{who}: the reference prices {priced[0]} in {priced[1]}, the trade sells "
                    f"{self.intent.token_in.symbol} for {self.intent.token_out.symbol}"
                )
        venues = self.venues
        if isinstance(venues, str):
            raise TypeError(f"{who}: venues must be a sequence of venue names, not one string")
        venues = tuple(venues) or ((self.intent.venue,) if self.intent.venue else ())
        if not venues or not all(isinstance(v, str) and v.strip() for v in venues):
            raise ValueError(f"{who}: name the venue(s) the route trades on, got {venues!r}")
        if self.intent.venue is not None and set(venues) != {self.intent.venue}:
            raise ValueError(
                f"{who}: the intent is pinned to venue {self.intent.venue!r} but the route "
                f"trades on {', '.join(venues)}"
            )
        object.__setattr__(self, "venues", venues)

    @property
    def client_order_id(self) -> str:
        return self.intent.client_order_id

    @property
    def token_in(self) -> Token:
        return self.intent.token_in

    @property
    def token_out(self) -> Token:
        return self.intent.token_out

    @property
    def amount_in(self) -> int:
        return self.intent.amount_in

    def effective_price(self) -> float:
        """Whole ``token_out`` received per whole ``token_in`` sold, at ``expected_out``."""
        scale = 10.0 ** (self.token_in.decimals - self.token_out.decimals)
        return self.expected_out / self.amount_in * scale

    def gas_price(self, context: RiskContext) -> int:
        """The gas price this trade pays: its own max fee, else the context's current price."""
        return context.gas_price_wei if self.gas_price_wei is None else self.gas_price_wei

    def max_gas_cost_wei(self, context: RiskContext) -> int:
        return self.gas_limit * self.gas_price(context)


@dataclass(frozen=True, slots=True)
class RiskContext:
    """The world as the checks see it; the trading cycle reads it, the engine never does I/O.

    ``balances``: wallet A's raw balance per token symbol (a missing token counts as 0).
    ``prices``: whole quote tokens per whole token, to value holdings (the quote token is 1).
    ``traded_today_quote``: today's traded volume, raw quote units. ``realized_pnl_today_quote``:
    today's realized profit (negative: a loss), raw quote units. ``gas_price_wei``: the current
    gas price. ``native_balance_wei``: wallet A's native (gas) balance. ``reference_prices``:
    whole quote tokens per whole token from a source the caller vouches for, used only for
    proposals without their own ``reference`` (the backtest's candles); a token missing here
    makes the reference check warn. ``kill_switch``: engaged means every trade is refused.
    ``quarantined``: token symbol -> why it must not be bought (an operator clears it).
    ``token_verdicts``: token symbol -> the token-safety simulation's verdict for the tokens
    this cycle buys; ``None`` where no chain is simulated (the backtest replays candles).
    ``unsettled_out``: token symbol -> what orders approved earlier in the batch may still
    deliver beyond their ``min_out`` (``expected_out - min_out``): ``balances`` count only the
    guaranteed output, which is right for what can be spent, but exposure must count all that
    may arrive (``holding``).
    """

    balances: Mapping[str, int]
    prices: Mapping[str, float]
    traded_today_quote: int
    realized_pnl_today_quote: int
    gas_price_wei: int
    native_balance_wei: int
    reference_prices: Mapping[str, float] = field(default_factory=dict)
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    quarantined: Mapping[str, str] = field(default_factory=dict)
    token_verdicts: Mapping[str, TokenVerdict] | None = None
    unsettled_out: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.balances, Mapping):
            raise TypeError("context: balances must be a mapping of token symbol -> raw amount")
        balances: dict[str, int] = {}
        for symbol, raw in self.balances.items():
            if not isinstance(symbol, str) or not symbol:
                raise TypeError(f"context: balances keys must be token symbols, got {symbol!r}")
            balances[symbol] = _int(raw, f"context: balances[{symbol!r}]")
        object.__setattr__(self, "balances", balances)
        object.__setattr__(self, "prices", _prices(self.prices, "context: prices"))
        object.__setattr__(
            self, "reference_prices", _prices(self.reference_prices, "context: reference_prices")
        )
        _int(self.traded_today_quote, "context: traded_today_quote")
        _int(self.realized_pnl_today_quote, "context: realized_pnl_today_quote", signed=True)
        _int(self.gas_price_wei, "context: gas_price_wei")
        _int(self.native_balance_wei, "context: native_balance_wei")
        if not isinstance(self.kill_switch, KillSwitch):
            raise TypeError("context: kill_switch must be a KillSwitch")
        if not isinstance(self.quarantined, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.quarantined.items()):
            raise TypeError("context: quarantined must map token symbols to reasons")
        object.__setattr__(self, "quarantined", dict(self.quarantined))
        if self.token_verdicts is not None:
            if not isinstance(self.token_verdicts, Mapping) or not all(
                    isinstance(v, TokenVerdict) for v in self.token_verdicts.values()):
                raise TypeError("context: token_verdicts must map token symbols to verdicts")
            object.__setattr__(self, "token_verdicts", dict(self.token_verdicts))
        object.__setattr__(self, "unsettled_out", {
            symbol: _int(raw, f"context: unsettled_out[{symbol!r}]")
            for symbol, raw in self.unsettled_out.items()})

    def balance(self, token: Token) -> int:
        return self.balances.get(token.symbol, 0)

    def holding(self, symbol: str) -> int:
        """The most wallet A may hold of ``symbol`` once the batch's earlier orders filled."""
        return self.balances.get(symbol, 0) + self.unsettled_out.get(symbol, 0)

    def after(self, proposal: TradeProposal) -> RiskContext:
        """The context once ``proposal`` has traded, counted conservatively.

        ``token_in`` loses ``amount_in``; ``token_out`` gains only ``min_out`` (the guaranteed
        output) in ``balances`` and the rest of ``expected_out`` in ``unsettled_out``; today's
        volume grows by ``amount_in_quote``; the native balance pays the maximum gas cost. Used
        to check several orders of one cycle one after another.
        """
        balances = dict(self.balances)
        balances[proposal.token_in.symbol] = max(0, self.balance(proposal.token_in)
                                                 - proposal.amount_in)
        balances[proposal.token_out.symbol] = self.balance(proposal.token_out) + proposal.min_out
        unsettled = dict(self.unsettled_out)
        out = proposal.token_out.symbol
        unsettled[out] = unsettled.get(out, 0) + max(0, proposal.expected_out - proposal.min_out)
        return replace(
            self,
            balances=balances,
            unsettled_out=unsettled,
            traded_today_quote=self.traded_today_quote + proposal.amount_in_quote,
            native_balance_wei=max(
                0, self.native_balance_wei - proposal.max_gas_cost_wei(self)
            ),
        )


# -- verdicts --------------------------------------------------------------------------------


class Outcome(StrEnum):
    PASS = "pass"
    WARN = "warn"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    """One check's answer. ``system_fault``: the rejection means the bot cannot go on safely
    (DESIGN: gas balance too low is a system error): the caller moves the bot to ERROR."""

    outcome: Outcome
    reason: str = ""
    details: Mapping[str, Detail] = field(default_factory=dict)
    system_fault: bool = False

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.PASS and not self.reason.strip():
            raise ValueError(f"a {self.outcome.value} verdict needs a reason")
        for key, value in self.details.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError(f"verdict detail {key!r} must be an int, float or str")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"verdict detail {key!r} is not finite: {value}")
        object.__setattr__(self, "details", dict(self.details))

    @classmethod
    def passed(cls, details: Mapping[str, Detail] | None = None) -> RiskVerdict:
        return cls(Outcome.PASS, "", details or {})

    @classmethod
    def warn(cls, reason: str, details: Mapping[str, Detail] | None = None) -> RiskVerdict:
        return cls(Outcome.WARN, reason, details or {})

    @classmethod
    def reject(
        cls, reason: str, details: Mapping[str, Detail] | None = None, *,
        system_fault: bool = False,
    ) -> RiskVerdict:
        return cls(Outcome.REJECT, reason, details or {}, system_fault)

    @property
    def rejected(self) -> bool:
        return self.outcome is Outcome.REJECT


# -- the checks ------------------------------------------------------------------------------


class RiskCheck(ABC):
    """One rule. Subclasses set ``name`` and ``group`` and implement ``check``."""

    name: ClassVar[str]
    group: ClassVar[str]

    def __init__(self, limits: RiskLimits, quote_token: Token) -> None:
        if not isinstance(limits, RiskLimits):
            raise TypeError(f"limits must be a RiskLimits, got {type(limits).__name__}")
        if not isinstance(quote_token, Token):
            raise TypeError(f"quote_token must be a Token, got {type(quote_token).__name__}")
        self.limits = limits
        self.quote_token = quote_token

    @abstractmethod
    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        """Pass, warn or reject ``proposal``; a trade that breaks the rule is a rejection,
        never an exception."""

    def q(self, raw: int) -> str:
        """A raw quote amount for people: ``1500.25 USDC``."""
        return _units(raw, self.quote_token)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.group})>"


class KillSwitchCheck(RiskCheck):
    name = "kill_switch"
    group = CONTROL

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        switch = context.kill_switch
        if not switch.engaged:
            return RiskVerdict.passed()
        details: dict[str, Detail] = {"kill_switch_reason": switch.reason}
        if switch.actor:
            details["kill_switch_actor"] = switch.actor
        if switch.since is not None:
            details["kill_switch_since"] = switch.since.isoformat()
        return RiskVerdict.reject(f"kill_switch: {switch.describe()}", details)


class QuarantineCheck(RiskCheck):
    """A quarantined token is not bought until an operator clears it (``dexpilot token
    clear``); selling it, the way out, stays allowed."""

    name = "quarantine"
    group = CONTROL

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        token = proposal.token_out
        reason = context.quarantined.get(token.symbol)
        if reason is None:
            return RiskVerdict.passed()
        return RiskVerdict.reject(
            f"quarantine: {token.symbol} ({token.address}) is quarantined ({reason}); clear it "
            f"with `dexpilot token clear` once it has been looked at",
            {"token": token.symbol, "token_address": token.address, "quarantine_reason": reason},
        )


class TokenSafetyCheck(RiskCheck):
    """The bought token passed the token-safety simulation (``dexpilot.risk.token_safety``
    states the rules). Without a verdict for it the buy is refused: a token is trusted only
    after it was simulated. Paths that simulate no chain (``token_verdicts is None``) pass."""

    name = "token_safety"
    group = CONTROL

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        if context.token_verdicts is None:
            return RiskVerdict.passed()
        token = proposal.token_out
        verdict = context.token_verdicts.get(token.symbol)
        details: dict[str, Detail] = {"token": token.symbol, "token_address": token.address}
        if verdict is None:
            return RiskVerdict.reject(
                f"token_safety: {token.symbol} ({token.address}) has not been simulated: a "
                f"token is bought only after a simulated buy, transfer and sell", details)
        details |= {"verdict_block": verdict.block_number, "verdict_pool": verdict.pool}
        for what in ("buy_tax_bps", "transfer_tax_bps", "sell_tax_bps"):
            value = getattr(verdict, what)
            if value is not None:
                details[what] = round(float(value), 4)
        if not verdict.safe:
            return RiskVerdict.reject(verdict.reason, details)
        if not verdict.covers(proposal.token_in.address, proposal.amount_in):
            return RiskVerdict.reject(
                f"token_safety: {token.symbol} was simulated for buys of up to "
                f"{verdict.probed_amount_in} raw units of another input, not this one", details)
        return RiskVerdict.passed(details)


class AllowlistCheck(RiskCheck):
    """Both tokens on ``token_allowlist``; with the configured ``tokens``, also the same address
    and decimals as the configured token of that symbol (a token can copy a symbol)."""

    name = "allowlist"
    group = FUND

    def __init__(
        self, limits: RiskLimits, quote_token: Token, tokens: Iterable[Token] | None = None
    ) -> None:
        super().__init__(limits, quote_token)
        self.tokens = None if tokens is None else _token_table(tokens)

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        allowed = self.limits.token_allowlist
        for side, token in (("token_in", proposal.token_in), ("token_out", proposal.token_out)):
            details: dict[str, Detail] = {
                "side": side, "token": token.symbol, "token_address": token.address,
                "allowlist": ",".join(allowed),
            }
            if token.symbol not in allowed:
                return RiskVerdict.reject(
                    f"allowlist: {side} {token.symbol} ({token.address}) is not on the token "
                    f"allowlist ({', '.join(allowed)})",
                    details,
                )
            known = self.tokens.get(token.symbol) if self.tokens is not None else None
            if known is not None and not (
                same_token(known, token) and known.decimals == token.decimals
            ):
                details["allowed_address"] = known.address
                return RiskVerdict.reject(
                    f"allowlist: {side} {token.symbol} is {token.address} with "
                    f"{token.decimals} decimals, but the allowlisted {known.symbol} is "
                    f"{known.address} with {known.decimals} decimals (an impostor token?)",
                    details,
                )
        return RiskVerdict.passed()


class MaxTradeCheck(RiskCheck):
    name = "max_trade"
    group = FUND

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        value, limit = proposal.amount_in_quote, self.limits.max_trade_quote
        details: dict[str, Detail] = {"amount_in_quote": str(value), "limit": str(limit)}
        if value > limit:
            return RiskVerdict.reject(
                f"max_trade: selling {_units(proposal.amount_in, proposal.token_in)} worth "
                f"{self.q(value)} exceeds the per-trade limit max_trade_quote of {self.q(limit)}",
                details,
            )
        return RiskVerdict.passed(details)


class DailyVolumeCheck(RiskCheck):
    name = "daily_volume"
    group = FUND

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        today, value = context.traded_today_quote, proposal.amount_in_quote
        after, limit = today + value, self.limits.max_daily_volume_quote
        details: dict[str, Detail] = {
            "traded_today_quote": str(today), "amount_in_quote": str(value),
            "volume_after_quote": str(after), "limit": str(limit),
        }
        if after > limit:
            return RiskVerdict.reject(
                f"daily_volume: {self.q(today)} traded today + {self.q(value)} = {self.q(after)} "
                f"would exceed max_daily_volume_quote of {self.q(limit)}",
                details,
            )
        return RiskVerdict.passed(details)


class WorkingCapitalCheck(RiskCheck):
    """No single trade may commit more than the working capital given to the bot."""

    name = "working_capital"
    group = FUND

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        value, limit = proposal.amount_in_quote, self.limits.working_capital_quote
        details: dict[str, Detail] = {"amount_in_quote": str(value), "limit": str(limit)}
        if value > limit:
            return RiskVerdict.reject(
                f"working_capital: trade worth {self.q(value)} exceeds the working capital "
                f"working_capital_quote of {self.q(limit)}",
                details,
            )
        return RiskVerdict.passed(details)


class BalanceCheck(RiskCheck):
    """Wallet A holds what the trade sells."""

    name = "balance"
    group = FUND

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        token, need = proposal.token_in, proposal.amount_in
        have = context.balance(token)
        details: dict[str, Detail] = {"token": token.symbol, "balance": str(have),
                                      "amount_in": str(need)}
        if have < need:
            missing = "" if token.symbol in context.balances else " (no balance in the context)"
            return RiskVerdict.reject(
                f"balance: wallet A holds {_units(have, token)}{missing} but the trade sells "
                f"{_units(need, token)} (short by {_units(need - have, token)})",
                details,
            )
        return RiskVerdict.passed(details)


class DailyLossCheck(RiskCheck):
    """Once today's realized loss reaches ``daily_loss_limit_quote``, no new trade is opened."""

    name = "daily_loss"
    group = FUND

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        pnl, limit = context.realized_pnl_today_quote, self.limits.daily_loss_limit_quote
        details: dict[str, Detail] = {"realized_pnl_today_quote": str(pnl), "limit": str(limit)}
        if pnl < 0 and -pnl >= limit:
            return RiskVerdict.reject(
                f"daily_loss: realized loss today of {self.q(-pnl)} has reached "
                f"daily_loss_limit_quote of {self.q(limit)}; no new trades until the daily "
                f"counters reset",
                details,
            )
        return RiskVerdict.passed(details)


class MinOutCheck(RiskCheck):
    """``min_out`` is positive, not above ``expected_out``, and honours ``max_slippage_bps``."""

    name = "min_out"
    group = SLIPPAGE

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        token, expected, min_out = proposal.token_out, proposal.expected_out, proposal.min_out
        bps = self.limits.max_slippage_bps
        details: dict[str, Detail] = {
            "expected_out": str(expected), "min_out": str(min_out), "max_slippage_bps": bps,
        }
        if expected == 0:
            return RiskVerdict.reject(
                f"min_out: the route expects 0 {token.symbol} for "
                f"{_units(proposal.amount_in, proposal.token_in)}",
                details,
            )
        if min_out == 0:
            return RiskVerdict.reject(
                f"min_out: amountOutMin is 0 {token.symbol}: an unbounded swap is never sent",
                details,
            )
        if min_out > expected:
            return RiskVerdict.reject(
                f"min_out: amountOutMin {_units(min_out, token)} is above the expected output "
                f"{_units(expected, token)}: the swap would revert",
                details,
            )
        try:
            floor = min_amount_out(expected, bps)
        except ValueError:
            return RiskVerdict.reject(
                f"min_out: the expected output {_units(expected, token)} is too small to bound "
                f"with max_slippage_bps {bps} (the bound would be 0)",
                details,
            )
        tolerance_bps = (expected - min_out) * BPS / expected
        details |= {"min_allowed": str(floor), "slippage_bps": round(tolerance_bps, 4)}
        if min_out < floor:
            return RiskVerdict.reject(
                f"min_out: amountOutMin {_units(min_out, token)} allows "
                f"{tolerance_bps / 100:.2f} % slippage from the expected "
                f"{_units(expected, token)}; max_slippage_bps {bps} "
                f"({bps / 100:.2f} %) requires at least {_units(floor, token)}",
                details,
            )
        return RiskVerdict.passed(details)


class PriceImpactCheck(RiskCheck):
    """Warn above ``warn_price_impact_bps``, refuse above ``max_price_impact_bps``."""

    name = "price_impact"
    group = SLIPPAGE

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        impact = float(proposal.price_impact_bps)
        warn, cap = self.limits.warn_price_impact_bps, self.limits.max_price_impact_bps
        details: dict[str, Detail] = {
            "price_impact_bps": impact, "warn_bps": warn, "max_bps": cap,
            "venues": ",".join(proposal.venues),
        }
        shown = f"{impact / 100:.2f} % ({impact:g} bps) on {', '.join(proposal.venues)}"
        if impact > cap:
            return RiskVerdict.reject(
                f"price_impact: {shown} exceeds max_price_impact_bps {cap} ({cap / 100:.2f} %)",
                details,
            )
        if impact > warn:
            return RiskVerdict.warn(
                f"price_impact: {shown} is above warn_price_impact_bps {warn} "
                f"({warn / 100:.2f} %)",
                details,
            )
        return RiskVerdict.passed(details)


class EdgeCheck(RiskCheck):
    """The intent's ``min_edge_bps`` (when > 0) against the route: the value of the expected
    output over the value of the input, both in quote units, must still offer that edge."""

    name = "edge"
    group = SLIPPAGE

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        wanted = float(proposal.intent.min_edge_bps)
        if wanted <= 0:
            return RiskVerdict.passed()
        value_in, value_out = proposal.amount_in_quote, proposal.expected_out_quote
        details: dict[str, Detail] = {
            "min_edge_bps": wanted, "amount_in_quote": str(value_in),
            "expected_out_quote": str(value_out),
        }
        if value_in == 0:
            return RiskVerdict.reject(
                f"edge: the input is worth 0 {self.quote_token.symbol}: no edge can be measured",
                details,
            )
        edge = (value_out - value_in) * BPS / value_in
        details["edge_bps"] = round(edge, 4)
        if edge < wanted:
            return RiskVerdict.reject(
                f"edge: the route returns {self.q(value_out)} for {self.q(value_in)}, an edge of "
                f"{edge:.2f} bps, below the strategy's min_edge_bps of {wanted:g}",
                details,
            )
        return RiskVerdict.passed(details)


def _holding_value(
    context: RiskContext, token: Token, raw: int, quote_token: Token
) -> int | None:
    if same_token(token, quote_token):
        return raw
    if raw == 0:
        return 0
    price = context.prices.get(token.symbol)
    return None if price is None else quote_value(raw, token, price, quote_token)


class TokenExposureCheck(RiskCheck):
    """The bought token's holding after the trade, valued in quote units, stays within
    ``max_exposure_per_token_quote``. Buying the quote token adds no exposure."""

    name = "token_exposure"
    group = EXPOSURE

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        token = proposal.token_out
        if same_token(token, self.quote_token):
            return RiskVerdict.passed()
        after = context.holding(token.symbol) + proposal.expected_out
        limit = self.limits.max_exposure_per_token_quote
        details: dict[str, Detail] = {"token": token.symbol, "holding_after": str(after),
                                      "limit": str(limit)}
        value = _holding_value(context, token, after, self.quote_token)
        if value is None:
            return RiskVerdict.reject(
                f"token_exposure: no price for {token.symbol} in the context: the exposure the "
                f"trade adds cannot be valued",
                details,
            )
        details["exposure_after_quote"] = str(value)
        if value > limit:
            return RiskVerdict.reject(
                f"token_exposure: holding {_units(after, token)} after the trade, worth "
                f"{self.q(value)}, would exceed max_exposure_per_token_quote of {self.q(limit)}",
                details,
            )
        return RiskVerdict.passed(details)


class TotalExposureCheck(RiskCheck):
    """All non-quote holdings after the trade, valued in quote units, stay within
    ``max_total_exposure_quote``; a trade that lowers an exposure already over the limit passes
    with a warning (it is the way back under the limit).

    Holdings are valued with the context's prices and the decimals of the configured ``tokens``
    (plus the trade's own tokens). A held token without a price or known decimals cannot be
    valued, so the trade is refused rather than waved through.
    """

    name = "total_exposure"
    group = EXPOSURE

    def __init__(
        self, limits: RiskLimits, quote_token: Token, tokens: Iterable[Token] = ()
    ) -> None:
        super().__init__(limits, quote_token)
        self.tokens = _token_table(tokens)

    def _total(
        self, context: RiskContext, balances: Mapping[str, int], tokens: Mapping[str, Token]
    ) -> tuple[int, list[str]]:
        total, unvalued = 0, []
        for symbol, raw in sorted(balances.items()):
            if raw == 0 or symbol == self.quote_token.symbol:
                continue
            price, token = context.prices.get(symbol), tokens.get(symbol)
            if price is None or token is None:
                unvalued.append(symbol)
                continue
            total += quote_value(raw, token, price, self.quote_token)
        return total, unvalued

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        t_in, t_out = proposal.token_in, proposal.token_out
        tokens = {**self.tokens, t_in.symbol: t_in, t_out.symbol: t_out}
        before_balances = {s: context.holding(s)
                           for s in {*context.balances, *context.unsettled_out}}
        after_balances = dict(before_balances)
        after_balances[t_in.symbol] = max(0, context.holding(t_in.symbol) - proposal.amount_in)
        after_balances[t_out.symbol] = context.holding(t_out.symbol) + proposal.expected_out
        after, unvalued = self._total(context, after_balances, tokens)
        limit = self.limits.max_total_exposure_quote
        details: dict[str, Detail] = {"exposure_after_quote": str(after), "limit": str(limit)}
        if unvalued:
            details["unvalued"] = ",".join(unvalued)
            return RiskVerdict.reject(
                f"total_exposure: wallet A holds {', '.join(unvalued)} without a price in the "
                f"context or known decimals: total exposure cannot be valued",
                details,
            )
        if after <= limit:
            return RiskVerdict.passed(details)
        before, _ = self._total(context, before_balances, tokens)
        details["exposure_before_quote"] = str(before)
        if after < before:
            return RiskVerdict.warn(
                f"total_exposure: {self.q(before)} is above max_total_exposure_quote of "
                f"{self.q(limit)}; this trade lowers it to {self.q(after)}",
                details,
            )
        return RiskVerdict.reject(
            f"total_exposure: exposure after the trade of {self.q(after)} (now {self.q(before)}) "
            f"would exceed max_total_exposure_quote of {self.q(limit)}",
            details,
        )


class GasPriceCheck(RiskCheck):
    name = "gas_price"
    group = OPERATIONAL

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        price, cap = proposal.gas_price(context), self.limits.max_gas_price_wei
        details: dict[str, Detail] = {"gas_price_wei": str(price), "limit": str(cap)}
        if price > cap:
            return RiskVerdict.reject(
                f"gas_price: {_gwei(price)} exceeds max_gas_price_wei ({_gwei(cap)})", details
            )
        return RiskVerdict.passed(details)


class GasBalanceCheck(RiskCheck):
    """After paying this trade's maximum gas, wallet A keeps ``min_gas_balance_wei``. A
    rejection here is a system fault (DESIGN): the bot stops until gas is topped up."""

    name = "gas_balance"
    group = OPERATIONAL

    def __init__(self, limits: RiskLimits, quote_token: Token, native_symbol: str = "ETH") -> None:
        super().__init__(limits, quote_token)
        self.native_symbol = native_symbol

    def _eth(self, wei: int) -> str:
        return f"{format_units(wei, 18)} {self.native_symbol}"

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        have, floor = context.native_balance_wei, self.limits.min_gas_balance_wei
        cost = proposal.max_gas_cost_wei(context)
        need = floor + cost
        details: dict[str, Detail] = {
            "native_balance_wei": str(have), "max_gas_cost_wei": str(cost),
            "gas_limit": proposal.gas_limit, "gas_price_wei": str(proposal.gas_price(context)),
            "min_gas_balance_wei": str(floor),
        }
        if have < need:
            return RiskVerdict.reject(
                f"gas_balance: wallet A holds {self._eth(have)}; this trade may cost up to "
                f"{self._eth(cost)} (gas limit {proposal.gas_limit} at "
                f"{_gwei(proposal.gas_price(context))}) and min_gas_balance_wei keeps "
                f"{self._eth(floor)} in reserve: {self._eth(need)} needed",
                details,
                system_fault=True,
            )
        return RiskVerdict.passed(details)


class ReferencePriceCheck(RiskCheck):
    """The traded price must lie within ``max_reference_deviation_bps`` of a reference the
    traded pool cannot move; a pool far from it is manipulated or stale.

    With ``proposal.reference`` (the trading cycle always sets it): the reference is the
    external feed where it answered, else the median of the on-chain sources independent of
    the traded pools (``dexpilot.market.reference`` says what counts as one). Fewer than
    ``min_reference_sources`` of those and no feed: refused, ``no independent reference``.
    Without it, the context's ``reference_prices`` (per token, from a source the caller
    vouches for: the backtest's own candles) are compared, and a missing one warns.
    """

    name = "reference_price"
    group = OPERATIONAL

    def _reference(self, context: RiskContext, token: Token) -> float | None:
        if same_token(token, self.quote_token):
            return context.reference_prices.get(token.symbol, 1.0)
        return context.reference_prices.get(token.symbol)

    def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
        t_in, t_out = proposal.token_in, proposal.token_out
        pair = f"{t_out.symbol} per {t_in.symbol}"
        source = "pool" if proposal.pool_price is not None else "route"
        price = proposal.pool_price if proposal.pool_price is not None else (
            proposal.effective_price()
        )
        limit = self.limits.max_reference_deviation_bps
        details: dict[str, Detail] = {"price": price, "price_source": source, "limit_bps": limit}
        if proposal.reference is not None:
            return self._independent(proposal, proposal.reference, price, source, details)
        ref_in, ref_out = self._reference(context, t_in), self._reference(context, t_out)
        missing = [t.symbol for t, r in ((t_in, ref_in), (t_out, ref_out)) if r is None]
        if ref_in is None or ref_out is None:
            details["missing_reference"] = ",".join(missing)
            return RiskVerdict.warn(
                f"reference_price: no reference price for {', '.join(missing)}: the {source} "
                f"price {price:.6g} {pair} was not checked against a feed",
                details,
            )
        reference = ref_in / ref_out
        deviation = abs(price / reference - 1.0) * BPS
        details |= {"reference": reference, "deviation_bps": round(deviation, 4)}
        if deviation > limit:
            return RiskVerdict.reject(
                f"reference_price: the {source} price {price:.6g} {pair} is {deviation:.0f} bps "
                f"from the reference {reference:.6g}, above max_reference_deviation_bps {limit} "
                f"(a manipulated or stale pool?)",
                details,
            )
        return RiskVerdict.passed(details)

    def _independent(self, proposal: TradeProposal, ref: PriceReference, price: float,
                     source: str, details: dict[str, Detail]) -> RiskVerdict:
        pair = f"{proposal.token_out.symbol} per {proposal.token_in.symbol}"
        where = (f"pool {', '.join(ref.pools)}" if len(ref.pools) == 1
                 else f"pools {', '.join(ref.pools)}" if ref.pools
                 else f"the route on {', '.join(proposal.venues)}")
        found = "; ".join(s.label for s in ref.sources) or "none"
        details |= {"reference_pools": ",".join(ref.pools), "reference_sources_found": found}
        feed = ref.of(SourceKind.FEED)
        used: tuple[ReferenceSource, ...] = feed[:1] if feed else ref.on_chain()
        needed = self.limits.min_reference_sources
        if not feed and len(used) < needed:
            details |= {"reference_source_count": len(used), "min_reference_sources": needed}
            return RiskVerdict.reject(
                f"reference_price: no independent reference for {where}: found {len(used)} "
                f"source(s) the traded pool cannot move ({found}), min_reference_sources is "
                f"{needed} and no reference feed answered; the {source} price {price:.6g} "
                f"{pair} was not traded on",
                details,
            )
        reference = statistics.median(s.price for s in used)
        deviation = abs(price / reference - 1.0) * BPS
        how = "the reference feed" if feed else f"median of {len(used)} on-chain source(s)"
        details |= {"reference": reference, "deviation_bps": round(deviation, 4),
                    "reference_sources": "; ".join(s.label for s in used),
                    "reference_source_count": len(used)}
        limit = self.limits.max_reference_deviation_bps
        if deviation > limit:
            return RiskVerdict.reject(
                f"reference_price: the {source} price {price:.6g} {pair} on {where} is "
                f"{deviation:.0f} bps from the reference {reference:.6g} ({how}: "
                f"{'; '.join(s.label for s in used)}), above max_reference_deviation_bps "
                f"{limit} (a manipulated or stale pool?)",
                details,
            )
        return RiskVerdict.passed(details)


def default_checks(
    limits: RiskLimits,
    quote_token: Token,
    *,
    tokens: Iterable[Token] | None = None,
    native_symbol: str = "ETH",
) -> list[RiskCheck]:
    """Every check, in the order the engine runs them."""
    return [
        KillSwitchCheck(limits, quote_token),
        QuarantineCheck(limits, quote_token),
        TokenSafetyCheck(limits, quote_token),
        AllowlistCheck(limits, quote_token, tokens),
        MaxTradeCheck(limits, quote_token),
        DailyVolumeCheck(limits, quote_token),
        WorkingCapitalCheck(limits, quote_token),
        BalanceCheck(limits, quote_token),
        DailyLossCheck(limits, quote_token),
        MinOutCheck(limits, quote_token),
        PriceImpactCheck(limits, quote_token),
        EdgeCheck(limits, quote_token),
        TokenExposureCheck(limits, quote_token),
        TotalExposureCheck(limits, quote_token, tokens or ()),
        GasPriceCheck(limits, quote_token),
        GasBalanceCheck(limits, quote_token, native_symbol),
        ReferencePriceCheck(limits, quote_token),
    ]
