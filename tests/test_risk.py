"""Risk control: every rule rejects its case with its numbers and passes the case just inside.

Pure unit tests, no chain. Amounts use real decimals: USDC 6, WBTC 8, WETH 18. The quote token
is USDC; limits are raw USDC units. Prices are chosen so that trade values are exact
(WETH 2500 USDC, WBTC 50000 USDC), which makes the boundaries exact too.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dexpilot.config import RiskLimits
from dexpilot.money import Token
from dexpilot.risk import (
    GROUP_ORDER,
    KillSwitch,
    MaxTradeCheck,
    MinOutCheck,
    Outcome,
    PriceImpactCheck,
    RiskCheck,
    RiskContext,
    RiskDecision,
    RiskEngine,
    RiskVerdict,
    TradeProposal,
    WorkingCapitalCheck,
    min_amount_out,
    quote_value,
)
from dexpilot.strategy.intent import OrderIntent

USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
WBTC = Token("WBTC", "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599", 8)
DAI = Token("DAI", "0x6B175474E89094C44Da98b954EedeAC495271d0F", 18)
TOKENS = [USDC, WETH, WBTC, DAI]

ETH = 10**18
GWEI = 10**9
USD = 10**6  # one USDC in raw units
WETH_PRICE = 2500.0
WBTC_PRICE = 50000.0

ORDER = (
    "kill_switch", "quarantine", "token_safety",
    "allowlist", "max_trade", "daily_volume", "working_capital", "balance", "daily_loss",
    "min_out", "price_impact", "edge",
    "token_exposure", "total_exposure",
    "gas_price", "gas_balance", "reference_price",
)


def limits(**overrides: Any) -> RiskLimits:
    values: dict[str, Any] = {
        "max_trade_quote": 1_000 * USD,
        "max_daily_volume_quote": 10_000 * USD,
        "working_capital_quote": 5_000 * USD,
        "daily_loss_limit_quote": 200 * USD,
        "max_exposure_per_token_quote": 3_000 * USD,
        "max_total_exposure_quote": 4_000 * USD,
        "token_allowlist": ["USDC", "WETH", "WBTC"],
    }
    values.update(overrides)
    return RiskLimits(**values)


def engine(**overrides: Any) -> RiskEngine:
    return RiskEngine(limits(**overrides), USDC, TOKENS)


def context(**overrides: Any) -> RiskContext:
    values: dict[str, Any] = {
        "balances": {"USDC": 5_000 * USD, "WETH": 0, "WBTC": 0},
        "prices": {"WETH": WETH_PRICE, "WBTC": WBTC_PRICE},
        "traded_today_quote": 0,
        "realized_pnl_today_quote": 0,
        "gas_price_wei": 30 * GWEI,
        "native_balance_wei": 1 * ETH,
        "reference_prices": {"WETH": WETH_PRICE, "WBTC": WBTC_PRICE},
    }
    values.update(overrides)
    return RiskContext(**values)


def _price(token: Token) -> float:
    return {"USDC": 1.0, "WETH": WETH_PRICE, "WBTC": WBTC_PRICE, "DAI": 1.0}[token.symbol]


def proposal_fields(
    amount_in: int = 1_000 * USD,
    token_in: Token = USDC,
    token_out: Token = WETH,
    *,
    expected_out: int | None = None,
    min_out: int | None = None,
    cid: str = "o-1",
    group_id: str | None = None,
    min_edge_bps: float = 0.0,
) -> dict[str, Any]:
    """Sell ``amount_in`` of ``token_in`` at the reference price (no fee), bounded at 50 bps."""
    intent = OrderIntent(
        client_order_id=cid, strategy="test", token_in=token_in, token_out=token_out,
        amount_in=amount_in, group_id=group_id, min_edge_bps=min_edge_bps,
    )
    in_quote = quote_value(amount_in, token_in, _price(token_in), USDC)
    if expected_out is None:
        # Exact at these prices: value in quote units, then back into token_out units.
        expected_out = in_quote * 10**token_out.decimals // (
            int(_price(token_out)) * 10**USDC.decimals
        )
    return {
        "intent": intent,
        "expected_out": expected_out,
        "min_out": min_amount_out(expected_out, 50) if min_out is None else min_out,
        "amount_in_quote": in_quote,
        "expected_out_quote": quote_value(expected_out, token_out, _price(token_out), USDC),
        "price_impact_bps": 10.0,
        "venues": ("uniswap_v2_a",),
        "gas_limit": 200_000,
    }


def proposal(
    amount_in: int = 1_000 * USD,
    token_in: Token = USDC,
    token_out: Token = WETH,
    *,
    expected_out: int | None = None,
    min_out: int | None = None,
    cid: str = "o-1",
    group_id: str | None = None,
    min_edge_bps: float = 0.0,
    **overrides: Any,
) -> TradeProposal:
    fields = proposal_fields(
        amount_in, token_in, token_out, expected_out=expected_out, min_out=min_out, cid=cid,
        group_id=group_id, min_edge_bps=min_edge_bps,
    )
    return TradeProposal(**{**fields, **overrides})


def assert_rejected(decision: RiskDecision, rule: str, *numbers: str) -> None:
    assert not decision.approved, decision.reason
    assert decision.rule == rule, decision.reason
    assert decision.reason.startswith(f"{rule}: "), decision.reason
    for number in numbers:
        assert number in decision.reason, (number, decision.reason)


def assert_approved(decision: RiskDecision) -> None:
    assert decision.approved, f"{decision.rule}: {decision.reason}"
    assert decision.rule == "all"


# -- the shared slippage bound -------------------------------------------------------------


def test_min_amount_out_math() -> None:
    assert min_amount_out(1_000_000, 50) == 995_000
    assert min_amount_out(1_000_000, 0) == 1_000_000
    assert min_amount_out(999, 50) == 994  # 994.005, rounded down
    assert min_amount_out(201, 50) == 199  # 199.995, rounded down
    assert min_amount_out(2, 50) == 1  # the smallest expected output that keeps a bound at 0.5 %
    assert min_amount_out(1, 0) == 1
    assert min_amount_out(3 * ETH, 50) == 2_985_000_000_000_000_000
    assert min_amount_out(2**256 - 1, 50) == (2**256 - 1) * 9_950 // 10_000  # exact, no float
    for expected in (1_000_003, 12_345_678_901, 10**24 + 7):
        bound = min_amount_out(expected, 37)
        assert bound * 10_000 <= expected * (10_000 - 37) < (bound + 1) * 10_000


@pytest.mark.parametrize(
    ("expected_out", "bps", "error", "match"),
    [
        (1, 50, ValueError, "would be 0"),  # 1 wei cannot be bounded at 0.5 %: never 0
        (0, 50, ValueError, "would be 0"),
        (1_000_000, 10_000, ValueError, "below 10000"),
        (1_000_000, -1, ValueError, "negative"),
        (-5, 50, ValueError, "negative"),
        (1_000_000.0, 50, TypeError, "int"),
        (1_000_000, 0.5, TypeError, "int"),
        (True, 50, TypeError, "int"),
    ],
)
def test_min_amount_out_refuses(expected_out: Any, bps: Any, error: type[Exception],
                                match: str) -> None:
    with pytest.raises(error, match=match):
        min_amount_out(expected_out, bps)


def test_quote_value_is_integer_exact() -> None:
    assert quote_value(ETH, WETH, 2500.0, USDC) == 2_500 * USD
    assert quote_value(5_000_000, WBTC, 50000.0, USDC) == 2_500 * USD  # 0.05 WBTC
    assert quote_value(ETH // 3, WETH, 3000.1, USDC) == 1_000_033_333  # floored
    assert quote_value(1, WETH, 2500.0, USDC) == 0  # 1 wei is worth less than 1 raw USDC
    assert quote_value(7 * ETH, WETH, Decimal("1234.567891"), USDC) == 8_641_975_237
    assert quote_value(123, USDC, 99.0, USDC) == 123  # the quote token is worth itself
    assert quote_value(10**30, WETH, 0.1, USDC) == 10**17  # 0.1 is taken as written, not binary
    with pytest.raises(ValueError, match="finite number > 0"):
        quote_value(ETH, WETH, float("nan"), USDC)
    with pytest.raises(ValueError, match="finite number > 0"):
        quote_value(ETH, WETH, 0.0, USDC)
    with pytest.raises(TypeError, match="int"):
        quote_value(1.5, WETH, 2500.0, USDC)  # type: ignore[arg-type]


# -- the happy path and the order ------------------------------------------------------------


def test_a_sound_trade_is_approved_with_every_check_run() -> None:
    eng = engine()
    assert eng.check_names == ORDER
    decision = eng.evaluate(proposal(), context())
    assert_approved(decision)
    assert decision.warnings == ()
    assert decision.reason == "approved: all 17 checks passed"
    assert decision.details["token_in"] == "USDC"
    assert decision.details["max_trade.amount_in_quote"] == str(1_000 * USD)
    assert decision.details["token_exposure.exposure_after_quote"] == str(1_000 * USD)


def test_order_fund_before_slippage() -> None:
    # Breaks the per-trade limit and has no slippage bound: the fund rule decides.
    p = proposal(1_500 * USD, min_out=0, price_impact_bps=900.0)
    decision = engine().evaluate(p, context())
    assert_rejected(decision, "max_trade")
    assert decision.group == "fund"


def test_order_slippage_before_exposure_before_operational() -> None:
    # Slippage (impact 9 %) and exposure (WETH already at the limit) and gas price all broken.
    ctx = context(balances={"USDC": 5_000 * USD, "WETH": ETH * 6 // 5}, gas_price_wei=500 * GWEI)
    decision = engine().evaluate(proposal(price_impact_bps=900.0), ctx)
    assert_rejected(decision, "price_impact")
    assert decision.group == "slippage"
    decision = engine().evaluate(proposal(), ctx)
    assert_rejected(decision, "token_exposure")
    assert decision.group == "exposure"
    decision = engine().evaluate(proposal(), replace(ctx, balances={"USDC": 5_000 * USD}))
    assert_rejected(decision, "gas_price")
    assert decision.group == "operational"


def test_each_rule_decides_in_its_turn() -> None:
    """Break several rules at once, then mend them one at a time, on an engine with a few checks
    (the kill switch is put first even when a custom list leaves it out)."""
    eng = RiskEngine(
        limits(), USDC, TOKENS,
        checks=[MaxTradeCheck(limits(), USDC), MinOutCheck(limits(), USDC),
                PriceImpactCheck(limits(), USDC)],
    )
    assert eng.check_names == ("kill_switch", "max_trade", "min_out", "price_impact")
    engaged = context(kill_switch=KillSwitch.engage("incident", actor="ops"))
    bad: dict[str, Any] = {"min_out": 0, "price_impact_bps": 900.0}
    assert eng.evaluate(proposal(1_500 * USD, **bad), engaged).rule == "kill_switch"
    assert eng.evaluate(proposal(1_500 * USD, **bad), context()).rule == "max_trade"
    assert eng.evaluate(proposal(**bad), context()).rule == "min_out"
    assert eng.evaluate(proposal(price_impact_bps=900.0), context()).rule == "price_impact"
    assert_approved(eng.evaluate(proposal(), context()))


def test_custom_checks_must_keep_the_group_order() -> None:
    with pytest.raises(ValueError, match="comes after a later group"):
        RiskEngine(limits(), USDC, TOKENS,
                   checks=[PriceImpactCheck(limits(), USDC), MaxTradeCheck(limits(), USDC)])
    with pytest.raises(ValueError, match="two checks are named 'max_trade'"):
        RiskEngine(limits(), USDC, TOKENS,
                   checks=[MaxTradeCheck(limits(), USDC), MaxTradeCheck(limits(), USDC)])

    class Odd(RiskCheck):
        name = "odd"
        group = "vibes"

        def check(self, proposal: TradeProposal, context: RiskContext) -> RiskVerdict:
            return RiskVerdict.passed()

    with pytest.raises(ValueError, match="unknown group 'vibes'"):
        RiskEngine(limits(), USDC, TOKENS, checks=[Odd(limits(), USDC)])
    assert GROUP_ORDER == ("control", "fund", "slippage", "exposure", "operational")


# -- kill switch and allowlist ---------------------------------------------------------------


def test_kill_switch_rejects_everything_with_its_reason() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    switch = KillSwitch.engage("oracle outage", actor="alice", at=at)
    decision = engine().evaluate(proposal(), context(kill_switch=switch))
    assert_rejected(decision, "kill_switch", "oracle outage", "alice", "2025-01-02T03:04:05")
    assert decision.group == "control"
    assert decision.details["kill_switch_reason"] == "oracle outage"
    # Even a trade that breaks other rules is refused by the switch first.
    decision = engine().evaluate(proposal(5_000 * USD), context(kill_switch=switch))
    assert decision.rule == "kill_switch"
    assert_approved(engine().evaluate(proposal(), context(kill_switch=KillSwitch.released())))
    with pytest.raises(ValueError, match="needs a reason"):
        KillSwitch(engaged=True)
    with pytest.raises(ValueError, match="naive"):
        KillSwitch(True, "x", "ops", datetime(2025, 1, 1))


def test_allowlist() -> None:
    decision = engine().evaluate(proposal(token_out=DAI), context())
    assert_rejected(decision, "allowlist", "token_out DAI", "USDC, WETH, WBTC")
    dai_ctx = context(balances={"USDC": 5_000 * USD, "DAI": 1_000 * ETH})
    decision = engine().evaluate(proposal(1_000 * ETH, DAI, USDC), dai_ctx)
    assert_rejected(decision, "allowlist", "token_in DAI")
    # A token that copies an allowlisted symbol is refused by address.
    fake = Token("WETH", "0x000000000000000000000000000000000000dEaD", 18)
    decision = engine().evaluate(proposal(token_out=fake), context())
    assert_rejected(decision, "allowlist", fake.address, WETH.address, "impostor")
    # Both allowlisted: passes.
    assert_approved(engine(token_allowlist=["USDC", "WETH", "DAI"]).evaluate(
        proposal(1_000 * ETH, DAI, USDC), dai_ctx))


# -- fund limits -----------------------------------------------------------------------------


def test_max_trade_boundary() -> None:
    assert_approved(engine().evaluate(proposal(1_000 * USD), context()))
    decision = engine().evaluate(proposal(1_000 * USD + 1), context())
    assert_rejected(decision, "max_trade", "1000.000001 USDC", "max_trade_quote of 1000 USDC")
    assert decision.details["amount_in_quote"] == "1000000001"
    assert decision.details["limit"] == "1000000000"


def test_max_trade_values_non_quote_tokens() -> None:
    ctx = context(balances={"USDC": 0, "WBTC": 10**8})
    assert_approved(engine().evaluate(proposal(2_000_000, WBTC, USDC), ctx))  # 0.02 WBTC = 1000
    decision = engine().evaluate(proposal(2_000_001, WBTC, USDC), ctx)
    assert_rejected(decision, "max_trade", "0.02000001 WBTC", "1000.0005 USDC")


def test_daily_volume_boundary() -> None:
    ctx = context(traded_today_quote=9_000 * USD)
    assert_approved(engine().evaluate(proposal(), ctx))
    decision = engine().evaluate(proposal(), replace(ctx, traded_today_quote=9_000 * USD + 1))
    assert_rejected(decision, "daily_volume", "9000.000001 USDC traded today", "1000 USDC",
                    "10000.000001 USDC", "max_daily_volume_quote of 10000 USDC")


def test_working_capital_boundary() -> None:
    # RiskLimits keeps max_trade <= working_capital, so the max_trade rule normally fires first;
    # this rule is the second line should the config ever allow a larger trade.
    raw_limits = limits().model_copy(update={"working_capital_quote": 800 * USD})
    check = WorkingCapitalCheck(raw_limits, USDC)
    assert check.check(proposal(800 * USD), context()).outcome is Outcome.PASS
    verdict = check.check(proposal(800 * USD + 1), context())
    assert verdict.rejected
    assert verdict.reason.startswith("working_capital: ")
    assert "800.000001 USDC" in verdict.reason and "working_capital_quote of 800 USDC" in (
        verdict.reason
    )


def test_balance_boundary() -> None:
    ctx = context(balances={"USDC": 0, "WETH": ETH // 5})  # 0.2 WETH, worth 500 USDC
    assert_approved(engine().evaluate(proposal(ETH // 5, WETH, USDC), ctx))
    decision = engine().evaluate(proposal(ETH // 5 + 1, WETH, USDC), ctx)
    assert_rejected(decision, "balance", "holds 0.2 WETH", "sells 0.200000000000000001 WETH",
                    "short by 0.000000000000000001 WETH")
    decision = engine().evaluate(proposal(2_000_000, WBTC, USDC), context(balances={}))
    assert_rejected(decision, "balance", "holds 0 WBTC (no balance in the context)")


def test_daily_loss_boundary() -> None:
    assert_approved(engine().evaluate(proposal(), context(realized_pnl_today_quote=-199_999_999)))
    assert_approved(engine().evaluate(proposal(), context(realized_pnl_today_quote=10**9)))
    decision = engine().evaluate(proposal(), context(realized_pnl_today_quote=-200 * USD))
    assert_rejected(decision, "daily_loss", "loss today of 200 USDC",
                    "daily_loss_limit_quote of 200 USDC")
    assert decision.details["realized_pnl_today_quote"] == "-200000000"
    # A zero limit stops trading at the first loss, not before it.
    assert_approved(engine(daily_loss_limit_quote=0).evaluate(proposal(), context()))
    decision = engine(daily_loss_limit_quote=0).evaluate(
        proposal(), context(realized_pnl_today_quote=-1)
    )
    assert_rejected(decision, "daily_loss", "0.000001 USDC")


# -- slippage --------------------------------------------------------------------------------


def test_min_out_boundary() -> None:
    p = proposal()
    expected = p.expected_out  # 0.4 WETH
    assert expected == 4 * ETH // 10
    floor = min_amount_out(expected, 50)
    assert floor == 398 * ETH // 1000
    assert_approved(engine().evaluate(replace(p, min_out=floor), context()))
    assert_approved(engine().evaluate(replace(p, min_out=expected), context()))  # 0 % tolerance
    decision = engine().evaluate(replace(p, min_out=floor - 1), context())
    assert_rejected(decision, "min_out", "0.397999999999999999 WETH", "0.50 %", "0.4 WETH",
                    "max_slippage_bps 50", "at least 0.398 WETH")
    assert decision.details["min_allowed"] == str(floor)
    # A looser limit accepts the same order.
    assert_approved(engine(max_slippage_bps=51).evaluate(replace(p, min_out=floor - 1), context()))


@pytest.mark.parametrize(
    ("expected_out", "min_out", "words"),
    [
        (4 * ETH // 10, 0, "amountOutMin is 0 WETH: an unbounded swap is never sent"),
        (4 * ETH // 10, 4 * ETH // 10 + 1, "above the expected output 0.4 WETH"),
        (0, 0, "the route expects 0 WETH"),
        (1, 1, "too small to bound"),
    ],
)
def test_min_out_refuses_unbounded_or_absurd_bounds(expected_out: int, min_out: int,
                                                    words: str) -> None:
    p = proposal(expected_out=expected_out, min_out=min_out, expected_out_quote=0)
    assert_rejected(engine().evaluate(p, context()), "min_out", words)


def test_price_impact_warn_and_refuse() -> None:
    assert engine().evaluate(proposal(price_impact_bps=100.0), context()).warnings == ()
    decision = engine().evaluate(proposal(price_impact_bps=100.5), context())
    assert_approved(decision)
    assert len(decision.warnings) == 1
    assert decision.warnings[0].startswith("price_impact: 1.00 % (100.5 bps) on uniswap_v2_a")
    assert "warn_price_impact_bps 100" in decision.warnings[0]
    assert "with 1 warning(s): price_impact" in decision.reason
    decision = engine().evaluate(proposal(price_impact_bps=500.0), context())
    assert_approved(decision)
    assert "5.00 %" in decision.warnings[0]
    decision = engine().evaluate(proposal(price_impact_bps=500.01), context())
    assert_rejected(decision, "price_impact", "500.01 bps", "max_price_impact_bps 500 (5.00 %)")
    # A warning raised before a later rejection is kept on the decision.
    ctx = context(gas_price_wei=201 * GWEI)
    decision = engine().evaluate(proposal(price_impact_bps=300.0), ctx)
    assert_rejected(decision, "gas_price")
    assert decision.warnings and decision.warnings[0].startswith("price_impact")


def test_edge_is_checked_when_the_strategy_asks_for_one() -> None:
    # 1000 USDC in; WETH out worth 1002 USDC: a 20 bps edge.
    out = 4008 * ETH // 10_000
    p = proposal(expected_out=out, min_edge_bps=20.0, pool_price=1 / WETH_PRICE)
    assert p.expected_out_quote == 1_002 * USD
    assert_approved(engine().evaluate(p, context()))
    decision = engine().evaluate(replace(p, intent=replace(p.intent, min_edge_bps=20.5)),
                                 context())
    assert_rejected(decision, "edge", "1002 USDC for 1000 USDC", "20.00 bps",
                    "min_edge_bps of 20.5")
    # No edge asked for: a trade worth less than its input (fees) is not the edge rule's business.
    assert_approved(engine().evaluate(proposal(expected_out=ETH * 399 // 1000), context()))


# -- exposure --------------------------------------------------------------------------------


def test_token_exposure_boundary() -> None:
    # Holding 0.8 WETH (2000 USDC) and buying 0.4 WETH (1000 USDC): 3000 USDC, the limit.
    ctx = context(balances={"USDC": 5_000 * USD, "WETH": 8 * ETH // 10})
    assert_approved(engine().evaluate(proposal(), ctx))
    # 4e8 wei more is 0.000001 USDC more at 2500 USDC per WETH.
    over = replace(ctx, balances={"USDC": 5_000 * USD, "WETH": 8 * ETH // 10 + 4 * 10**8})
    decision = engine().evaluate(proposal(), over)
    assert_rejected(decision, "token_exposure", "holding 1.2000000004 WETH",
                    "worth 3000.000001 USDC", "max_exposure_per_token_quote of 3000 USDC")
    # Selling the token lowers its exposure: fine even when it is over the limit.
    decision = engine().evaluate(proposal(ETH // 5, WETH, USDC), over)
    assert_approved(decision)


def test_token_exposure_needs_a_price() -> None:
    decision = engine().evaluate(proposal(token_out=WBTC), context(prices={"WETH": WETH_PRICE}))
    assert_rejected(decision, "token_exposure", "no price for WBTC")


def test_total_exposure_boundary() -> None:
    # 0.05 WBTC (2500) + 0.2 WETH (500) + buying 0.4 WETH (1000) = 4000 USDC, the limit.
    balances = {"USDC": 5_000 * USD, "WBTC": 5_000_000, "WETH": ETH // 5}
    assert_approved(engine().evaluate(proposal(), context(balances=balances)))
    # One more satoshi (0.0005 USDC) is over.
    decision = engine().evaluate(proposal(), context(balances={**balances, "WBTC": 5_000_001}))
    assert_rejected(decision, "total_exposure", "after the trade of 4000.0005 USDC",
                    "now 3000.0005 USDC", "max_total_exposure_quote of 4000 USDC")


def test_total_exposure_lets_a_reducing_trade_through_with_a_warning() -> None:
    ctx = context(balances={"USDC": 0, "WBTC": 9_000_000})  # 0.09 WBTC: 4500 USDC, over 4000
    decision = engine().evaluate(proposal(500_000, WBTC, USDC), ctx)  # sell 0.005 WBTC
    assert_approved(decision)
    assert decision.warnings == (
        "total_exposure: 4500 USDC is above max_total_exposure_quote of 4000 USDC; this trade "
        "lowers it to 4250 USDC",
    )
    # Swapping WBTC for WETH keeps the total where it is: over the limit, so refused.
    decision = engine().evaluate(proposal(500_000, WBTC, WETH), ctx)
    assert_rejected(decision, "total_exposure", "4500 USDC")


def test_total_exposure_refuses_holdings_it_cannot_value() -> None:
    ctx = context(balances={"USDC": 5_000 * USD, "DAI": ETH})
    decision = engine().evaluate(proposal(), ctx)
    assert_rejected(decision, "total_exposure", "holds DAI without a price")
    unknown = context(balances={"USDC": 5_000 * USD, "PEPE": 10}, prices={"WETH": WETH_PRICE,
                                                                         "PEPE": 1.0})
    decision = engine().evaluate(proposal(), unknown)
    assert_rejected(decision, "total_exposure", "PEPE", "known decimals")


# -- operational -----------------------------------------------------------------------------


def test_gas_price_boundary() -> None:
    assert_approved(engine().evaluate(proposal(), context(gas_price_wei=200 * GWEI)))
    decision = engine().evaluate(proposal(), context(gas_price_wei=200 * GWEI + 1))
    assert_rejected(decision, "gas_price", "200.000000001 gwei", "max_gas_price_wei (200 gwei)")
    # The proposal's own max fee wins over the current price.
    decision = engine().evaluate(proposal(gas_price_wei=250 * GWEI), context())
    assert_rejected(decision, "gas_price", "250 gwei")
    assert_approved(engine().evaluate(proposal(gas_price_wei=20 * GWEI),
                                      context(gas_price_wei=300 * GWEI)))


def test_gas_balance_boundary_is_a_system_fault() -> None:
    # 200k gas at 30 gwei = 0.006 ETH, plus the 0.01 ETH reserve.
    need = 16 * ETH // 1000
    assert_approved(engine().evaluate(proposal(), context(native_balance_wei=need)))
    decision = engine().evaluate(proposal(), context(native_balance_wei=need - 1))
    assert_rejected(decision, "gas_balance", "holds 0.015999999999999999 ETH",
                    "up to 0.006 ETH", "gas limit 200000 at 30 gwei", "keeps 0.01 ETH",
                    "0.016 ETH needed")
    assert decision.system_fault
    assert decision.record()["details"]["system_fault"] == 1
    assert not engine().evaluate(proposal(5_000 * USD), context()).system_fault


def test_reference_price_deviation() -> None:
    ctx = context(balances={"USDC": 0, "WETH": ETH})
    sell = proposal(ETH // 5, WETH, USDC)  # pool price in USDC per WETH
    assert_approved(engine().evaluate(replace(sell, pool_price=2574.9), ctx))  # +299.6 bps
    assert_approved(engine().evaluate(replace(sell, pool_price=2425.1), ctx))  # -299.6 bps
    decision = engine().evaluate(replace(sell, pool_price=2575.5), ctx)  # +302 bps
    assert_rejected(decision, "reference_price", "pool price 2575.5 USDC per WETH", "302 bps",
                    "reference 2500", "max_reference_deviation_bps 300", "manipulated")
    decision = engine().evaluate(replace(sell, pool_price=2000.0), ctx)
    assert_rejected(decision, "reference_price", "2000 bps")
    # Without a pool price, the route's own price is compared (0.4 WETH for 1000 USDC: exact).
    assert_approved(engine().evaluate(proposal(), context()))
    decision = engine().evaluate(proposal(expected_out=ETH * 38 // 100), context())  # -5 %
    assert_rejected(decision, "reference_price", "route price 0.00038 WETH per USDC",
                    "500 bps")


def test_missing_reference_price_warns() -> None:
    decision = engine().evaluate(proposal(), context(reference_prices={}))
    assert_approved(decision)
    assert decision.warnings == (
        "reference_price: no reference price for WETH: the route price 0.0004 WETH per USDC was "
        "not checked against a feed",
    )


# -- decisions are stored, and bad input is refused -------------------------------------------


def test_decision_details_are_json_scalars() -> None:
    for decision in (
        engine().evaluate(proposal(price_impact_bps=200.0), context()),
        engine().evaluate(proposal(1_000 * USD + 1), context()),
        engine().evaluate(proposal(), context(native_balance_wei=0)),
    ):
        for key, value in decision.details.items():
            assert type(value) in (int, float, str), (key, value)
        record = decision.record()
        assert json.loads(json.dumps(record)) == record
        assert set(record) == {"client_order_id", "approved", "rule", "reason", "details"}
    big = engine(max_trade_quote=2**255, max_daily_volume_quote=2**255,
                 working_capital_quote=2**255).evaluate(
        proposal(2**200, amount_in_quote=2**200), context(balances={"USDC": 2**201}))
    assert big.details["amount_in"] == str(2**200)  # past any float's exact range: a string


def test_decisions_pickle() -> None:
    decision = engine().evaluate(proposal(price_impact_bps=200.0), context())
    assert pickle.loads(pickle.dumps(decision)) == decision
    p = proposal()
    assert pickle.loads(pickle.dumps(p)) == p


def test_rejection_is_stored_with_its_reason(tmp_path: Path) -> None:
    from sqlmodel import SQLModel

    from dexpilot.ledger import Ledger, RiskDecisionRow

    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    SQLModel.metadata.create_all(ledger.engine)  # the migrations are test_ledger's business
    try:
        decision = engine().evaluate(proposal(1_000 * USD + 1), context())
        row = ledger.record_risk_decision(**decision.record())
        assert isinstance(row, RiskDecisionRow)
        with ledger.session(write=False) as session:
            stored = session.get(RiskDecisionRow, row.id)
            assert stored is not None
            assert (stored.approved, stored.rule) == (False, "max_trade")
            assert stored.reason == decision.reason
            assert stored.details["limit"] == "1000000000"
            assert stored.details["group"] == "fund"
    finally:
        ledger.dispose()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"expected_out": 1.5}, TypeError, "expected_out must be an int"),
        ({"min_out": -1}, ValueError, "min_out must not be negative"),
        ({"amount_in_quote": True}, TypeError, "amount_in_quote must be an int"),
        ({"gas_limit": 0}, ValueError, "gas_limit must be a positive int"),
        ({"price_impact_bps": float("nan")}, ValueError, "price_impact_bps must be finite"),
        ({"pool_price": -1.0}, ValueError, "pool_price must be a finite number > 0"),
        ({"venues": "uniswap_v2_a"}, TypeError, "not one string"),
        ({"venues": ()}, ValueError, "name the venue"),
    ],
)
def test_bad_proposals_are_refused(overrides: dict[str, Any], error: type[Exception],
                                   match: str) -> None:
    with pytest.raises(error, match=match):
        TradeProposal(**{**proposal_fields(), **overrides})


def test_pinned_venue_must_match_the_route() -> None:
    p = proposal()
    pinned = replace(p.intent, venue="uniswap_v3")
    with pytest.raises(ValueError, match="pinned to venue 'uniswap_v3'"):
        replace(p, intent=pinned)
    assert replace(p, intent=pinned, venues=()).venues == ("uniswap_v3",)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"balances": {"WETH": -1}}, ValueError, r"balances\['WETH'\] must not be negative"),
        ({"balances": {"WETH": 1.0}}, TypeError, r"balances\['WETH'\] must be an int"),
        ({"prices": {"WETH": float("inf")}}, ValueError, "finite number > 0"),
        ({"reference_prices": {"WBTC": 0}}, ValueError, "finite number > 0"),
        ({"traded_today_quote": -1}, ValueError, "traded_today_quote must not be negative"),
        ({"gas_price_wei": 1.0}, TypeError, "gas_price_wei must be an int"),
        ({"kill_switch": True}, TypeError, "KillSwitch"),
    ],
)
def test_bad_contexts_are_refused(overrides: dict[str, Any], error: type[Exception],
                                  match: str) -> None:
    with pytest.raises(error, match=match):
        context(**overrides)


def test_engine_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match=r"quote token USDC .* is not among the configured tokens"):
        RiskEngine(limits(), USDC, [WETH])
    with pytest.raises(ValueError, match=r"amount_in_quote .* must equal amount_in"):
        engine().evaluate(proposal(amount_in_quote=999 * USD), context())
    with pytest.raises(ValueError, match=r"expected_out_quote .* must equal expected_out"):
        engine().evaluate(proposal(ETH // 5, WETH, USDC, expected_out_quote=1),
                          context(balances={"WETH": ETH}))
    with pytest.raises(TypeError, match="TradeProposal"):
        engine().evaluate("buy", context())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        limits(max_trade_quote=-1)


# -- several orders in one cycle -------------------------------------------------------------


def test_batch_counts_earlier_orders_against_the_limits() -> None:
    ctx = context(traded_today_quote=8_500 * USD)
    a, b = proposal(cid="a"), proposal(cid="b")
    assert engine().evaluate(b, ctx).approved  # each alone fits
    first, second = engine().evaluate_batch([a, b], ctx)
    assert_approved(first)
    assert_rejected(second, "daily_volume", "9500 USDC traded today")


def test_batch_arbitrage_group_is_all_or_nothing() -> None:
    buy = proposal(cid="leg-1", group_id="arb-1")
    # Sell what the first leg guarantees (its min_out): the wallet holds no WETH before.
    sell = proposal(buy.min_out, WETH, USDC, cid="leg-2", group_id="arb-1")
    ctx = context(balances={"USDC": 5_000 * USD})
    assert engine().evaluate(sell, ctx).rule == "balance"  # alone it could not trade
    assert [d.approved for d in engine().evaluate_batch([buy, sell], ctx)] == [True, True]

    bad_sell = replace(sell, pool_price=2_000.0)  # a manipulated pool on the second venue
    later = proposal(cid="later", expected_out=4 * ETH // 10)
    first, second, third = engine().evaluate_batch([buy, bad_sell, later], ctx)
    assert_rejected(second, "reference_price")
    assert_rejected(first, "order_group", "leg leg-2 of group arb-1", "reference_price")
    assert first.details["rejected_by"] == "reference_price"
    # The rejected group left the context untouched: the next order sees the first leg undone.
    assert_approved(third)
    assert third.details["daily_volume.traded_today_quote"] == "0"
    with pytest.raises(ValueError, match="duplicate client_order_id"):
        engine().evaluate_batch([buy, buy], ctx)


def test_context_after_a_trade_is_conservative() -> None:
    p = proposal()
    after = context().after(p)
    assert after.balances["USDC"] == 4_000 * USD
    assert after.balances["WETH"] == p.min_out  # only the guaranteed output
    assert after.traded_today_quote == 1_000 * USD
    assert after.native_balance_wei == ETH - 200_000 * 30 * GWEI
