"""When a token is bad: the token-safety rules, in one place.

The probe (``dexpilot.chain.token_probe``) simulates, from wallet A's own address, a small buy
on the pool to be traded, the same buy for another address, a transfer between the two, a sell
of the rest back into the pool, and a buy and sell of the order's full size. ``judge`` turns
what it measured into a ``TokenVerdict``. A token is bad if, in this order:

1. buying it reverts for every recipient (paused, or blocked), unless what wallet A pays with
   is the token refusing it (then the probe says nothing about this token: not a verdict);
2. buying it reverts for wallet A only (wallet A is frozen or blacklisted by the token);
3. a buy delivers nothing to wallet A;
4. a transfer from wallet A returns false instead of reverting, or reverts;
5. the sell back into the pool reverts (a honeypot: it can be bought, never sold);
6. balances move differently from the token's ``Transfer`` events (rebasing, hidden mints or
   burns: the fill seen in the logs would not be what arrived);
7. the transfer, buy or sell tax exceeds ``risk.max_token_tax_bps`` (default 0): taxes are
   measured against the exact pool maths (the router's or QuoterV2's quote for the buy, the
   pool's own balance for the sell) and the amount sent (the transfer);
8. a buy of the order's full size, or selling that position back, reverts while the small one
   passes (a max-transaction or max-wallet limit that would trap the position).

Verdicts are pure values; the trading cycle stores them in the ledger with the block they were
simulated at and reuses them until they expire (``dexpilot.trading.token_safety``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dexpilot.money import Token, format_units

if TYPE_CHECKING:
    from dexpilot.chain.token_probe import ProbeReport

BPS = 10_000
Detail = int | float | str


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """Whether ``token`` may be bought, and why. ``conclusive`` is ``False`` when the token
    could not be simulated (no route to probe on, the probe itself failed): the buy is refused
    all the same, but nothing is stored and it is tried again next cycle."""

    token: Token
    pool: str
    block_number: int
    safe: bool
    reason: str
    buy_tax_bps: float | None = None
    transfer_tax_bps: float | None = None
    sell_tax_bps: float | None = None
    token_in: str = ""
    probed_amount_in: int = 0
    conclusive: bool = True
    details: dict[str, Detail] = field(default_factory=dict)

    def covers(self, token_in: str, amount_in: int) -> bool:
        """A safe verdict holds for buys up to the size it was probed at, with the same input
        token; a bad one holds for every buy."""
        if not self.safe:
            return True
        return self.token_in.lower() == token_in.lower() and amount_in <= self.probed_amount_in


def inconclusive(token: Token, pool: str, block_number: int, why: str) -> TokenVerdict:
    return TokenVerdict(token, pool, block_number, False,
                        f"token_safety: {token.symbol} could not be simulated: {why}",
                        conclusive=False)


def _tax_bps(expected: int, actual: int) -> float:
    if expected <= 0:
        return 0.0
    return max(0.0, (expected - actual) * BPS / expected)


def _pct(bps: float) -> str:
    return f"{bps / 100:.2f} %"


def judge(report: ProbeReport, *, max_tax_bps: int) -> TokenVerdict:
    """The verdict on what one probe measured (the rules in the module docstring, in order)."""
    request = report.request
    route = request.route
    token = route.token
    pool = route.pool
    # The input the probe spent in all. When an order sells all wallet A holds, the full-size
    # buy is short of the order by the small probes: the trade's own simulation before sending
    # covers that last few percent.
    amount = request.big_in + 2 * request.small_in
    sym = token.symbol

    def units(raw: int) -> str:
        return f"{format_units(raw, token.decimals)} {sym}"

    transfer_tax = _tax_bps(max(report.transfer_sent, report.transfer_debited),
                            report.transfer_arrived) if report.transfer_sent else None
    buy_tax = (_tax_bps(report.quoted or report.pool_sent, report.received)
               if report.buy_ok else None)
    sell_tax = (_tax_bps(report.sell_sent, report.sell_arrived)
                if report.sell_ok and report.sell_sent else None)
    details: dict[str, Detail] = {
        "pool": pool, "block_number": report.block_number, "quoted": str(report.quoted),
        "received": str(report.received), "transfer_sent": str(report.transfer_sent),
        "transfer_arrived": str(report.transfer_arrived), "sell_sent": str(report.sell_sent),
        "sell_arrived": str(report.sell_arrived), "probe_small_in": str(request.small_in),
        "probe_big_in": str(request.big_in), "max_token_tax_bps": max_tax_bps,
    }

    def verdict(safe: bool, reason: str) -> TokenVerdict:
        return TokenVerdict(token, pool, report.block_number, safe, reason, buy_tax,
                            transfer_tax, sell_tax, route.path[0].address, amount,
                            details=details)

    if not report.buy_ok and report.input_transfer_error is not None:
        pay = route.path[0].symbol
        return TokenVerdict(token, pool, report.block_number, False,
                            f"token_safety: {sym} could not be simulated: wallet A cannot send "
                            f"the {pay} it would pay with ({report.input_transfer_error})",
                            token_in=route.path[0].address, conclusive=False, details=details)
    own_words = (f"; a plain transfer from wallet A reverts with {report.zero_transfer_error!r}"
                 if report.zero_transfer_error else "")
    if not report.buy_ok and not report.control_ok:
        return verdict(False, f"token_safety: buying {sym} on pool {pool} reverts for every "
                              f"recipient ({report.buy_error}){own_words}: transfers paused "
                              f"or blocked")
    if not report.buy_ok:
        return verdict(False, f"token_safety: wallet A is frozen by the token {sym}: a buy to "
                              f"wallet A reverts ({report.buy_error}) while the same buy to "
                              f"another address passes{own_words}")
    if report.received == 0:
        return verdict(False, f"token_safety: a buy of {sym} on pool {pool} delivers nothing "
                              f"to wallet A (the pool sent {units(report.pool_sent)})")
    if report.transfer_returned_false:
        return verdict(False, f"token_safety: a transfer of {units(report.transfer_sent)} from "
                              f"wallet A returns false instead of reverting (moved "
                              f"{units(report.transfer_arrived)})")
    if report.transfer_error is not None:
        return verdict(False, f"token_safety: a transfer of {sym} from wallet A reverts "
                              f"({report.transfer_error}): wallet A frozen or blacklisted, or "
                              f"the token paused")
    if not report.sell_ok:
        return verdict(False, f"token_safety: sell into pool {pool} reverts: honeypot "
                              f"({report.sell_error})")
    if (report.wallet_delta != report.wallet_delta_by_events
            or report.other_delta != report.other_delta_by_events):
        return verdict(False, f"token_safety: balances of {sym} move differently from its "
                              f"Transfer events (wallet A {report.wallet_delta} by balance, "
                              f"{report.wallet_delta_by_events} by events; the other address "
                              f"{report.other_delta} by balance, {report.other_delta_by_events} "
                              f"by events)")
    for what, tax in (("transfer", transfer_tax), ("buy", buy_tax), ("sell", sell_tax)):
        if tax is not None and tax > max_tax_bps:
            return verdict(False, f"token_safety: {what} tax {_pct(tax)} > max "
                                  f"{_pct(max_tax_bps)} on {sym}")
    if request.big_in and not report.big_buy_ok:
        return verdict(False, f"token_safety: a buy of {sym} for the order's full size reverts "
                              f"({report.big_buy_error}) while a small buy passes: a "
                              f"max-transaction or max-wallet limit")
    if request.big_in and not report.big_sell_ok:
        return verdict(False, f"token_safety: selling a full-size position of "
                              f"{units(report.big_received)} back into pool {pool} reverts "
                              f"({report.big_sell_error}): a max-transaction limit would block "
                              f"the exit")
    taxes = ", ".join(f"{what} {_pct(tax or 0.0)}" for what, tax in
                      (("buy", buy_tax), ("transfer", transfer_tax), ("sell", sell_tax)))
    return verdict(True, f"token_safety: {sym} bought, transferred and sold from wallet A on "
                         f"pool {pool} at block {report.block_number}; taxes {taxes}")
