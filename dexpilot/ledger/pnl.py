"""Today's realized PnL and traded volume of wallet A: the inputs of the daily limits.

The problem: the daily loss limit (``DailyLossCheck``) can only fire if something tells it how
much the bot lost today. The live cycle used to pass 0 and the backtest its own equity change,
so the limit never fired live and meant something else in a backtest. Here is the one
definition, computed from fills the same way for live, paper and backtest:

``realized_pnl`` (pure) turns fills into PnL; ``realized_pnl_today`` reads today's (UTC) fills
and gas of one wallet from the ledger and calls it; the backtest calls ``realized_pnl`` on its
own simulated fills. ``traded_today_quote`` is the daily volume limit's input, read the same way.

The definition: **every fill valued at the cycle's prices**, what came in less what went out,
summed over today's fills, less all the gas wallet A paid today (native token valued in quote).
Amounts are netted per token first and each net is valued once (exact integers until then),
so an inventory round trip that ends flat in its middle token realises exactly its quote-token
result less gas, whatever the middle token's price.

Why this and not a FIFO or average-cost realised PnL per token:

- The bot trades out of inventory it did not buy today, or never bought (the operator funded
  it). A cost-basis method needs that inventory's cost, which the ledger does not have: a sale
  of it would realise against an invented cost (zero, or the day's first price), i.e. a made-up
  gain or loss.
- Valuing each fill at current prices is exactly "the wallet now, less the wallet had it not
  traded today", both at today's prices. It measures what trading did, not what the market did
  to inventory the bot holds anyway (the exposure limits bound that), so a falling market alone
  never stops the bot, and a losing bot is stopped whatever the market does.
- A loss shows when it is made: a buy above the market (fees, slippage, a skewed pool) is a loss
  at once. With FIFO a bot that keeps buying badly and never sells realises nothing, and its
  loss limit never fires.
- Gas is a real loss: every mined or reverted transaction of the wallet counts (swaps,
  approvals, cancels, sweeps), not only filled swaps. Paper fills carry the simulated gas, priced
  at the cycle's gas price.

The price of this choice: a position opened today is marked to market (in both directions),
which in strict accounting is unrealised. For a loss limit that is the conservative side: a
loss cannot be hidden by not closing the position.

Paper and live fills are kept apart (the order's ``mode``): a paper run's imaginary losses do
not stop live trading on the same wallet, nor the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import col, select

from dexpilot.ledger import checks
from dexpilot.ledger.models import (
    NONCE_CONSUMING_TX_STATUSES,
    FillRow,
    OrderRow,
    TradeMode,
    TransactionRow,
)
from dexpilot.ledger.store import Ledger
from dexpilot.money import Token
from dexpilot.risk.checks import quote_value, same_token


@dataclass(frozen=True, slots=True)
class Flow:
    """One fill as the PnL sees it: wallet A gave ``amount_in`` of ``token_in`` and got
    ``amount_out`` of ``token_out`` (raw units; a reverted swap is no flow, only gas)."""

    token_in: Token
    amount_in: int
    token_out: Token
    amount_out: int


@dataclass(frozen=True, slots=True)
class DailyPnl:
    """Raw quote units. ``realized_quote`` (trading less gas) is what the loss limit compares.

    ``unpriced``: tokens whose net flow could not be valued (no price, or an address that is not
    a configured token); they count as 0, so the caller should say so.
    """

    trading_quote: int
    gas_quote: int
    gas_wei: int
    fills: int
    unpriced: tuple[str, ...] = ()

    @property
    def realized_quote(self) -> int:
        return self.trading_quote - self.gas_quote


def _price(prices: Mapping[str, float], token: Token) -> float | None:
    price = prices.get(token.symbol)
    if price is None or isinstance(price, bool):
        return None
    number = float(price)
    return number if math.isfinite(number) and number > 0 else None


def _valued(raw: int, token: Token, price: float, quote: Token) -> int:
    """``raw`` (signed) in quote units: ``quote_value`` of its size, with its sign."""
    value = quote_value(abs(raw), token, price, quote)
    return value if raw >= 0 else -value


def realized_pnl(flows: Iterable[Flow], prices: Mapping[str, float], quote: Token, *,
                 gas_wei: int = 0, native: Token | None = None,
                 native_price: float | None = None) -> DailyPnl:
    """The realized PnL of ``flows`` at ``prices`` less ``gas_wei`` (see the module docstring).

    ``prices``: whole quote tokens per whole token, by symbol (the cycle's prices). ``native``:
    the gas token (18 decimals; on EVM chains WETH stands in for ETH), valued at
    ``native_price`` or else its price in ``prices``. Gas without a price counts as 0 and is
    listed in ``unpriced``.
    """
    if isinstance(gas_wei, bool) or not isinstance(gas_wei, int) or gas_wei < 0:
        raise ValueError(f"gas_wei must be a non-negative int (wei), got {gas_wei!r}")
    net: dict[str, tuple[Token, int]] = {}
    count = 0
    for flow in flows:
        count += 1
        for token, delta in ((flow.token_out, flow.amount_out), (flow.token_in, -flow.amount_in)):
            key = token.address.lower()
            held = net.get(key)
            net[key] = (token, (held[1] if held else 0) + delta)
    trading, unpriced = 0, []
    for token, raw in net.values():
        if raw == 0:
            continue
        price = 1.0 if same_token(token, quote) else _price(prices, token)
        if price is None:
            unpriced.append(token.symbol)
            continue
        trading += _valued(raw, token, price, quote)
    gas_quote = 0
    if gas_wei:
        gas_token = native or Token("ETH", "0x" + "e" * 40, 18)
        price = native_price if native_price is not None else _price(prices, gas_token)
        if price is None or not math.isfinite(price) or price <= 0:
            unpriced.append(gas_token.symbol)
        else:
            gas_quote = _valued(gas_wei, gas_token, price, quote)
    return DailyPnl(trading_quote=trading, gas_quote=gas_quote, gas_wei=gas_wei, fills=count,
                    unpriced=tuple(sorted(set(unpriced))))


# -- the ledger side ----------------------------------------------------------------------------


def day_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of ``now``'s day: the daily limits reset then."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _mode(mode: TradeMode | str) -> TradeMode:
    return mode if isinstance(mode, TradeMode) else TradeMode(mode)


@dataclass(frozen=True, slots=True)
class _FillFacts:
    token_in: str
    amount_in: int
    token_out: str
    amount_out: int
    tx_hash: str | None
    gas_used: int | None


def _fills_since(ledger: Ledger, *, env: str, wallet: str, mode: TradeMode,
                 since: datetime) -> list[_FillFacts]:
    statement = (
        select(FillRow)
        .join(OrderRow, col(FillRow.order_id) == col(OrderRow.id))
        .where(OrderRow.wallet == checks.address(wallet, "wallet"),
               OrderRow.env == checks.env(env), OrderRow.mode == mode,
               FillRow.filled_at >= since)
    )
    with ledger.session(write=False) as session:
        return [_FillFacts(f.token_in, f.amount_in, f.token_out, f.amount_out, f.tx_hash,
                           f.gas_used) for f in session.exec(statement).all()]


def gas_paid_wei(ledger: Ledger, *, env: str, wallet: str, since: datetime) -> int:
    """Gas wallet A paid for its transactions signed since ``since`` that have a receipt
    (mined or reverted: a reverted transaction pays its gas all the same)."""
    statement = select(TransactionRow.gas_used, TransactionRow.effective_gas_price).where(
        TransactionRow.wallet == checks.address(wallet, "wallet"),
        TransactionRow.env == checks.env(env),
        TransactionRow.created_at >= since,
        col(TransactionRow.status).in_(sorted(s.value for s in NONCE_CONSUMING_TX_STATUSES)))
    with ledger.session(write=False) as session:
        rows = session.exec(statement).all()
    return sum((used or 0) * (price or 0) for used, price in rows)


def _token_table(tokens: Iterable[Token]) -> dict[str, Token]:
    return {t.address.lower(): t for t in tokens}


def _unknown(address: str) -> Token:
    # An address that is no configured token: it cannot be priced, but it must be reported.
    return Token(address, address, 18)


def realized_pnl_today(ledger: Ledger, *, env: str, wallet: str, mode: TradeMode | str,
                       tokens: Iterable[Token], prices: Mapping[str, float], quote: Token,
                       native: Token, paper_gas_price_wei: int = 0,
                       now: datetime | None = None) -> DailyPnl:
    """Wallet A's realized PnL since midnight UTC (``realized_pnl`` over the ledger's fills).

    Live: the gas of every transaction the wallet sent today (``gas_paid_wei``). Paper (no
    transactions): each paper fill's simulated ``gas_used`` at ``paper_gas_price_wei``.
    """
    trade_mode = _mode(mode)
    since = day_start(now)
    table = _token_table(tokens)
    fills = _fills_since(ledger, env=env, wallet=wallet, mode=trade_mode, since=since)
    flows = [Flow(table.get(f.token_in.lower()) or _unknown(f.token_in), f.amount_in,
                  table.get(f.token_out.lower()) or _unknown(f.token_out), f.amount_out)
             for f in fills]
    if trade_mode is TradeMode.LIVE:
        gas = gas_paid_wei(ledger, env=env, wallet=wallet, since=since)
    else:
        gas = sum((f.gas_used or 0) for f in fills if f.tx_hash is None) * paper_gas_price_wei
    return realized_pnl(flows, prices, quote, gas_wei=gas, native=native)


def traded_today_quote(ledger: Ledger, *, env: str, wallet: str, mode: TradeMode | str,
                       tokens: Iterable[Token], prices: Mapping[str, float], quote: Token,
                       now: datetime | None = None) -> int:
    """Today's (UTC) traded volume of wallet A: every fill's input, valued in the quote token
    (a token without a price counts as 0, as before)."""
    table = _token_table(tokens)
    total = 0
    for fill in _fills_since(ledger, env=env, wallet=wallet, mode=_mode(mode),
                             since=day_start(now)):
        token = table.get(fill.token_in.lower())
        if token is None:
            continue
        price = 1.0 if same_token(token, quote) else _price(prices, token)
        if price is not None:
            total += quote_value(fill.amount_in, token, price, quote)
    return total


__all__ = [
    "DailyPnl",
    "Flow",
    "day_start",
    "gas_paid_wei",
    "realized_pnl",
    "realized_pnl_today",
    "traded_today_quote",
]
