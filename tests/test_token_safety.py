"""Hostile tokens against the live trading cycle: each is configured and allowlisted like any
token an operator adds, a model signal asks the bot to buy it, and the bot refuses with the
reason that names what the simulation found, sending nothing. A plain token in a normal pool
is still bought and sold; a token that takes a cut anyway is caught by the fill check and
quarantined until an operator clears it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.token_probe import ProbeReport, ProbeRequest, ProbeRoute
from dexpilot.config import AppConfig, ReferenceFeedConfig
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import (
    ErrorRow,
    FillRow,
    OrderRow,
    OrderStatus,
    RiskDecisionRow,
    SignalRow,
    TokenQuarantineRow,
    TokenVerdictRow,
    TransactionRow,
)
from dexpilot.market.pools import PoolKind
from dexpilot.metrics import Metrics
from dexpilot.money import Token
from dexpilot.risk.token_safety import judge
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from dexpilot_cli.main import app
from tests.fakes.price_feed_server import FakePriceFeed
from tests.fixtures.chain import ANVIL_KEY_1, pending_nonce, wallet_balances
from tests.fixtures.hostile import USDC_PER_TOKEN, HostileToken, with_tokens

FEED_IDS = {"WETH": "ethereum", "USDC": "usd-coin", "WBTC": "bitcoin", "UNI": "uniswap",
            "EVIL": "evil"}


# -- the rules, on measured numbers (no chain) -------------------------------------------------
USDC = Token("USDC", "0x" + "11" * 20, 6)
EVIL = Token("EVIL", "0x" + "22" * 20, 18)
POOL = "0x" + "33" * 20


def _report(**changes: Any) -> ProbeReport:
    request = ProbeRequest(ProbeRoute(PoolKind.V2, "0x" + "44" * 20, POOL, (USDC, EVIL)),
                           10**6, 50 * 10**6)
    clean = ProbeReport(
        request=request, block_number=7, quoted=1000, buy_ok=True, buy_error=None,
        received=1000, pool_sent=1000, control_ok=True, control_error=None, transfer_ok=True,
        transfer_returned_false=False, transfer_error=None, transfer_sent=500,
        transfer_arrived=500, transfer_debited=500, sell_ok=True, sell_error=None,
        sell_sent=500, sell_arrived=500, sell_out=10**5, big_buy_ok=True, big_buy_error=None,
        big_received=50_000, big_sell_ok=True, big_sell_error=None, wallet_delta=0,
        other_delta=1500, wallet_delta_by_events=0, other_delta_by_events=1500)
    return replace(clean, **changes)


def test_a_clean_probe_is_safe_and_names_the_block() -> None:
    verdict = judge(_report(), max_tax_bps=0)
    assert verdict.safe, verdict.reason
    assert verdict.block_number == 7 and "block 7" in verdict.reason
    assert (verdict.buy_tax_bps, verdict.transfer_tax_bps, verdict.sell_tax_bps) == (0, 0, 0)
    assert verdict.covers(USDC.address, 52 * 10**6)  # the full-size buy and the small ones
    assert not verdict.covers(USDC.address, 52 * 10**6 + 1)  # probed at this size, no more
    assert not verdict.covers(EVIL.address, 10**6)  # paid with another token


@pytest.mark.parametrize(("changes", "reason"), [
    ({"buy_ok": False, "buy_error": "paused", "control_ok": False},
     "reverts for every recipient (paused)"),
    ({"buy_ok": False, "buy_error": "account frozen"},
     "wallet A is frozen by the token EVIL"),
    ({"received": 0}, "delivers nothing to wallet A"),
    ({"transfer_ok": False, "transfer_returned_false": True, "transfer_arrived": 0},
     "returns false instead of reverting"),
    ({"transfer_ok": False, "transfer_error": "blacklisted"}, "reverts (blacklisted)"),
    ({"sell_ok": False, "sell_error": "blocked"}, f"sell into pool {POOL} reverts: honeypot"),
    ({"wallet_delta": 5}, "move differently from its Transfer events"),
    ({"transfer_arrived": 475}, "transfer tax 5.00 % > max 0.00 %"),
    ({"received": 990}, "buy tax 1.00 % > max 0.00 %"),
    ({"sell_arrived": 450}, "sell tax 10.00 % > max 0.00 %"),
    ({"big_buy_ok": False, "big_buy_error": "max tx"}, "max-transaction or max-wallet limit"),
    ({"big_sell_ok": False, "big_sell_error": "max tx"}, "would block the exit"),
])
def test_each_rule_refuses_with_its_reason(changes: dict[str, Any], reason: str) -> None:
    verdict = judge(_report(**changes), max_tax_bps=0)
    assert not verdict.safe
    assert verdict.reason.startswith("token_safety: ") and reason in verdict.reason, (
        verdict.reason)


def test_a_tax_within_the_configured_maximum_passes() -> None:
    assert judge(_report(transfer_arrived=475), max_tax_bps=500).safe
    assert not judge(_report(transfer_arrived=474), max_tax_bps=500).safe


# -- through the live cycle, on the dev chain ---------------------------------------------------
def _signal(side: str) -> SignalRow:
    """A fresh model signal on EVIL/USDC; a sell outranks the earlier buy (a higher edge)."""
    now = datetime.now(UTC)
    return SignalRow(model="mean_reversion", pair="EVIL/USDC", side=side,
                     edge_bps=80.0 if side == "buy" else 120.0,
                     confidence=0.9, horizon_s=600, inputs_from=now - timedelta(hours=1),
                     inputs_to=now, created_at=now, payload={"z": -2.5})


def _config(test_env: AppConfig, token: HostileToken, feed: FakePriceFeed,
            **risk: Any) -> AppConfig:
    for feed_id, usd in (("ethereum", 3000.0), ("bitcoin", 60_000.0), ("usd-coin", 1.0),
                         ("uniswap", 10.0), ("evil", float(USDC_PER_TOKEN))):
        feed.set_price(feed_id, usd)
    config = with_tokens(test_env, [token])
    return config.model_copy(update={
        "strategy": config.strategy.model_copy(update={"name": "statistical"}),
        "risk": config.risk.model_copy(update=risk),
        "reference_feed": ReferenceFeedConfig(url=feed.url, ids=FEED_IDS),
    })


@pytest.fixture
def session(test_env: AppConfig, price_feed: FakePriceFeed
            ) -> Iterator[Callable[..., TradingRuntime]]:
    """``session(token, **risk_changes)``: a live statistical trading runtime with the token
    configured and allowlisted."""
    runtimes: list[TradingRuntime] = []

    def make(token: HostileToken, **risk: Any) -> TradingRuntime:
        rt = TradingRuntime.build(_config(test_env, token, price_feed, **risk),
                                  HotWallet(ANVIL_KEY_1))
        runtimes.append(rt)
        return rt

    yield make
    for rt in runtimes:
        rt.close()


def _rows(rt: TradingRuntime, model: Any) -> list[Any]:
    with rt.ledger.session(write=False) as s:
        return list(s.exec(select(model)).all())


HOSTILE = [
    pytest.param("FeeOnTransferToken", (500,), None, "transfer tax 5.00 % > max 0.00 %",
                 id="fee-on-transfer"),
    pytest.param("HoneypotToken", (), "setPool", "reverts: honeypot", id="honeypot"),
    pytest.param("FreezableToken", (), "freeze", "wallet A is frozen by the token EVIL",
                 id="frozen"),
    pytest.param("PausableToken", (), "pause", "a plain transfer from wallet A reverts with "
                 "'paused': transfers paused or blocked", id="paused"),
    pytest.param("FalseReturnToken", (), "setPool", "returns false instead of reverting",
                 id="false-return"),
    pytest.param("MaxTxToken", (50 * 10**18,), None, "max-transaction or max-wallet limit",
                 id="max-tx"),
]


@pytest.mark.chain
@pytest.mark.parametrize(("kind", "args", "trap", "reason"), HOSTILE)
def test_a_hostile_token_is_refused_with_its_reason_and_nothing_is_sent(
    kind: str, args: tuple[Any, ...], trap: str | None, reason: str, chain: RpcClient,
    devnet: DevnetManifest, hostile: Callable[..., HostileToken],
    session: Callable[..., TradingRuntime],
) -> None:
    token = hostile(kind, "EVIL", *args)
    if trap == "setPool":
        token.owner_call("setPool", token.pool)
    elif trap == "freeze":
        token.owner_call("freeze", devnet.hot_wallet)
    elif trap == "pause":
        token.owner_call("pause")
    rt = session(token)
    rt.ledger.record_signals([_signal("buy")])
    tokens = [t.token() for t in rt.config.tokens]
    nonce, before = pending_nonce(chain, devnet.hot_wallet), wallet_balances(chain, devnet, tokens)

    report = run_cycle(rt, "hostile")

    assert report.intents == 1 and report.executions == [], report
    assert report.rejected == {"token_safety": 1}, report
    [decision] = [d for d in _rows(rt, RiskDecisionRow) if not d.approved]
    assert decision.rule == "token_safety" and reason in decision.reason, decision.reason
    assert pending_nonce(chain, devnet.hot_wallet) == nonce, "nothing may be sent"
    assert wallet_balances(chain, devnet, tokens) == before
    assert _rows(rt, OrderRow) == [] and _rows(rt, TransactionRow) == []
    [verdict] = _rows(rt, TokenVerdictRow)
    assert (verdict.token, verdict.safe, verdict.pool) == (token.address, False, token.pool)
    assert verdict.block_number == report.block_number

    # The stored verdict decides the next cycle without another simulation.
    probes = rt.token_safety.probes_run
    again = run_cycle(rt, "hostile-again")
    assert again.rejected == {"token_safety": 1} and rt.token_safety.probes_run == probes
    assert pending_nonce(chain, devnet.hot_wallet) == nonce


@pytest.mark.chain
def test_a_plain_token_in_a_normal_pool_is_bought_and_sold(
    chain: RpcClient, devnet: DevnetManifest, hostile: Callable[..., HostileToken],
    session: Callable[..., TradingRuntime],
) -> None:
    token = hostile("HostileToken", "EVIL")  # the base contract: no trap at all
    rt = session(token)
    evil = rt.config.token("EVIL")
    rt.ledger.record_signals([_signal("buy")])
    bought = run_cycle(rt, "buy")
    assert [e.status for e in bought.executions] == [OrderStatus.FILLED], bought
    held = wallet_balances(chain, devnet, [evil])["EVIL"]
    assert held == bought.executions[0].amount_out > 0  # the fill is what arrived

    rt.ledger.record_signals([_signal("sell")])
    sold = run_cycle(rt, "sell")
    assert [e.status for e in sold.executions] == [OrderStatus.FILLED], sold
    assert wallet_balances(chain, devnet, [evil])["EVIL"] == 0
    verdicts = {v.symbol: v for v in _rows(rt, TokenVerdictRow)}
    assert set(verdicts) == {"EVIL", "USDC"} and all(v.safe for v in verdicts.values())
    assert verdicts["EVIL"].buy_tax_bps == 0 and verdicts["EVIL"].sell_tax_bps == 0


@pytest.mark.chain
def test_a_fill_short_of_its_minimum_quarantines_the_token_until_an_operator_clears_it(
    chain: RpcClient, devnet: DevnetManifest, hostile: Callable[..., HostileToken],
    session: Callable[..., TradingRuntime], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator allowed taxed tokens (10 %), so the 5 % token passes the simulation; the
    router checks its own arithmetic, so the swap succeeds with 5 % less than amountOutMin in
    wallet A: a short fill, its own outcome, and the token is not bought again."""
    token = hostile("FeeOnTransferToken", "EVIL", 500)
    rt = session(token, max_token_tax_bps=1000)
    rt.ledger.record_signals([_signal("buy")])
    report = run_cycle(rt, "short")

    [result] = report.executions
    assert result.status is OrderStatus.SHORT_FILLED, result
    [order] = _rows(rt, OrderRow)
    [fill] = _rows(rt, FillRow)
    assert order.status is OrderStatus.SHORT_FILLED
    assert fill.amount_out == result.amount_out < order.min_amount_out
    assert fill.amount_out == wallet_balances(chain, devnet, [rt.config.token("EVIL")])["EVIL"]
    assert str(order.min_amount_out) in (order.error or "")
    [quarantine] = _rows(rt, TokenQuarantineRow)
    assert (quarantine.token, quarantine.source, quarantine.actor) == (
        token.address, "fill_shortfall", "executor")
    assert str(fill.amount_out) in quarantine.reason
    assert str(order.min_amount_out) in quarantine.reason
    [error] = [e for e in _rows(rt, ErrorRow) if e.source == "executor"]
    assert "short fill" in error.message
    metrics = Metrics()  # what DexpilotTokenQuarantined alerts on
    metrics.observe_ledger(rt)
    assert metrics.registry.get_sample_value("dexpilot_tokens_quarantined") == 1

    # The next session (its strategy starts from today's holdings) wants to buy more.
    nonce = pending_nonce(chain, devnet.hot_wallet)
    rt = session(token, max_token_tax_bps=1000)
    rt.ledger.record_signals([_signal("buy")])
    refused = run_cycle(rt, "after")
    assert refused.rejected.get("quarantine") == 1 and refused.executions == [], refused
    assert pending_nonce(chain, devnet.hot_wallet) == nonce

    monkeypatch.setenv("USER", "operator-olga")
    cli = CliRunner().invoke(app, ["token", "clear", "EVIL", "--env", "test",
                                   "--reason", "tax accepted"])
    assert cli.exit_code == 0, cli.output
    assert "may be bought again" in cli.output
    [cleared] = _rows(rt, TokenQuarantineRow)
    assert cleared.cleared_by is not None and cleared.cleared_by.startswith("cli:")
    assert cleared.clear_reason == "tax accepted" and cleared.cleared_at is not None
    listed = CliRunner().invoke(app, ["token", "list", "--env", "test"])
    assert listed.exit_code == 0 and "no token is quarantined" in listed.output


@pytest.mark.chain
def test_a_trade_that_fails_its_simulation_sends_nothing_not_even_the_approval(
    chain: RpcClient, devnet: DevnetManifest, hostile: Callable[..., HostileToken],
    session: Callable[..., TradingRuntime],
) -> None:
    """The token froze wallet A after its safe verdict was stored: the next buy passes risk on
    that verdict, its approval and swap are simulated together, the swap reverts, and nothing
    is signed. The failure makes the token be simulated again, which then names the freeze."""
    token = hostile("FreezableToken", "EVIL")
    rt = session(token)
    rt.ledger.record_signals([_signal("buy")])
    assert [e.status for e in run_cycle(rt, "buy").executions] == [OrderStatus.FILLED]
    token.owner_call("freeze", devnet.hot_wallet)
    nonce = pending_nonce(chain, devnet.hot_wallet)
    spent = len(_rows(rt, TransactionRow))

    rt = session(token)  # the next session starts from today's holdings and buys more
    rt.ledger.record_signals([_signal("buy")])
    report = run_cycle(rt, "again")

    [result] = report.executions
    assert result.status is OrderStatus.FAILED
    assert (result.error or "").startswith("simulation reverted"), result.error
    assert "account frozen" in (result.error or ""), result.error
    assert pending_nonce(chain, devnet.hot_wallet) == nonce, "not even the approval was sent"
    assert len(_rows(rt, TransactionRow)) == spent

    refused = run_cycle(rt, "third")
    assert refused.rejected == {"token_safety": 1}, refused
    [decision] = [d for d in _rows(rt, RiskDecisionRow)
                  if d.client_order_id.startswith("third") and not d.approved]
    assert "wallet A is frozen by the token EVIL" in decision.reason, decision.reason
    assert pending_nonce(chain, devnet.hot_wallet) == nonce
