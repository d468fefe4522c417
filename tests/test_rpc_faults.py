"""The error policy under every fault an RPC endpoint shows, on the dev chain.

Each fault is injected by a proxy in front of anvil (``tests/fakes/rpc_proxy.py``) while a
price gap waits to be traded, then trading cycles run through the session's guard
(``CycleGuard``, what the `trading-session` flow runs):

- with a healthy second endpoint, the cycle fails over and trades: no order fails, the switch
  is an error row (``rpc.failover``), the bot stays RUNNING;
- with the faulty endpoint alone, the cycle is recorded as failed (errors table, by kind and
  step) and skipped; after ``max_failed_cycles`` (2 here) the bot is in ERROR with the reason;
  a wrong chain id is a ``SystemFault`` at once; a dropped send is settled by the next cycle's
  reconcile, neither lost nor doubled.

Every test ends with the ledger equal to the chain: balances moved by exactly the recorded
fills and gas, the nonce by exactly the mined transactions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import median
from typing import Any

import pytest

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig
from dexpilot.errors import SystemFault
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import ErrorRow, OrderRow, OrderStatus, StateTransitionRow
from dexpilot.metrics import Metrics
from dexpilot.state import BotState
from dexpilot.trading.cycle import CycleReport, TradingRuntime, observed_cycle
from dexpilot.trading.session import CycleGuard, SessionSummary
from tests.fakes.rpc_proxy import SEND, Fault, RpcProxy
from tests.fixtures.chain import ANVIL_KEY_1, pending_nonce
from tests.test_executor import assert_chain_matches_ledger, balances, nonce_of, rows

pytestmark = pytest.mark.chain

TIMEOUT_S = 1.0  # the client's request timeout here: a DELAY fault waits longer


@dataclass(frozen=True)
class Case:
    fault: Fault
    kind: str  # the error kind the policy files it under
    options: dict[str, Any]


CASES = {
    "refuse": Case(Fault.REFUSE, "network", {}),
    "close": Case(Fault.CLOSE, "network", {}),
    "delay": Case(Fault.DELAY, "network", {"delay_s": TIMEOUT_S + 0.5}),
    "http_5xx": Case(Fault.HTTP_5XX, "network", {}),
    "http_429": Case(Fault.HTTP_429, "network", {"retry_after": 0.2}),
    "garbage": Case(Fault.GARBAGE, "api", {}),
    "error_object": Case(Fault.ERROR_OBJECT, "api", {}),
    "wrong_chain": Case(Fault.WRONG_CHAIN, "system", {}),
    "stale_block": Case(Fault.STALE_BLOCK, "api", {}),
}


@pytest.fixture
def proxies(devnet: DevnetManifest, chain: RpcClient) -> Iterator[tuple[RpcProxy, RpcProxy]]:
    faulty, healthy = RpcProxy(devnet.rpc_url).start(), RpcProxy(devnet.rpc_url).start()
    try:
        yield faulty, healthy
    finally:
        faulty.stop()
        healthy.stop()


class Session:
    """A trading runtime on the given endpoints and a guard counting its failed cycles."""

    def __init__(self, config: AppConfig, urls: list[str], **chain: Any) -> None:
        chain_cfg = config.chain.model_copy(update={
            "rpc_urls": urls, "rpc_timeout_s": TIMEOUT_S, "rpc_retries": 2,
            "rpc_backoff_s": 0.05, "rpc_probe_interval_s": 3600.0, **chain})
        strategy = config.strategy.model_copy(update={"max_failed_cycles": 2})
        self.config = config.model_copy(update={"chain": chain_cfg, "strategy": strategy})
        self.rt = TradingRuntime.build(self.config, HotWallet(ANVIL_KEY_1))
        self.metrics = Metrics()
        self.guard = CycleGuard(self.rt, SessionSummary())
        self.clock = 0.0
        self.rt.freshness.clock = lambda: self.clock

    def cycle(self, name: str) -> CycleReport | None:
        return self.guard.run(lambda: observed_cycle(self.rt, self.metrics, name))

    def errors(self) -> list[ErrorRow]:
        return rows(self.rt.ledger, ErrorRow)

    def orders(self) -> list[OrderRow]:
        return rows(self.rt.ledger, OrderRow)

    def close(self) -> None:
        self.rt.close()


def _gap(chain: RpcClient, devnet: DevnetManifest, factor: float = 1.02) -> None:
    """Move sushiswap's WETH/USDC away from the other pools: an arbitrage to trade."""
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snaps = [s for s in reader.snapshot(devnet.pool_refs()).pools if s.pool.pair == "WETH/USDC"]
    sushi = next(s for s in snaps if s.pool.venue == "sushiswap-v2")
    others = [s.price() for s in snaps if s is not sushi]
    assert MarketSimulator(chain, devnet).push(sushi, median(others) * factor)


def _stale_setup(session: Session, faulty: RpcProxy, chain: RpcClient) -> None:
    """The bot has seen the head; the faulty node freezes there while the chain moves on and
    more than the stale bound (2 blocks of 1 s) passes."""
    seen = session.cycle("seen")  # a cycle that reads the head (and trades what is there)
    assert seen is not None and seen.block_number == session.rt.freshness.highest_block
    faulty.inject(Fault.STALE_BLOCK, block=seen.block_number)
    chain.request("evm_mine")
    session.clock += 5.0


def _inject(case: Case, session: Session, faulty: RpcProxy, chain: RpcClient) -> None:
    if case.fault is Fault.STALE_BLOCK:
        _stale_setup(session, faulty, chain)
    else:
        faulty.inject(case.fault, **case.options)


STALE_BOUNDS = {"block_time_s": 1.0, "stale_after_blocks": 2.0}


@pytest.mark.parametrize("name", list(CASES))
def test_a_faulty_first_endpoint_is_left_for_the_healthy_one_and_no_order_fails(
        name: str, test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    case, (faulty, healthy) = CASES[name], proxies
    session = Session(test_env, [faulty.url, healthy.url], **STALE_BOUNDS)
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    try:
        _inject(case, session, faulty, chain)
        traded_before = len(session.orders())
        _gap(chain, devnet)
        started = time.monotonic()
        report = session.cycle("faulted")
        took = time.monotonic() - started
        assert report is not None and report.executions, session.errors()
        assert all(e.filled for e in report.executions), report.executions
        assert session.rt.client.url == healthy.url
        # (a refused connection never reaches the proxy's record)
        assert case.fault is Fault.REFUSE or faulty.faulted(case.fault)
        faulted = session.orders()[traded_before:]
        assert faulted and all(o.status is OrderStatus.FILLED for o in faulted), faulted
        switches = [e for e in session.errors() if e.source == "rpc.failover"]
        assert len(switches) == 1, session.errors()
        assert str(switches[0].kind) == case.kind
        assert not [e for e in session.errors() if e.source.startswith("cycle.")]
        assert session.rt.state.state is BotState.RUNNING
        if case.fault in (Fault.GARBAGE, Fault.ERROR_OBJECT):
            # An API error switches at once: one request to the faulty endpoint, no retries.
            assert len(faulty.faulted(case.fault)) == 1
        if case.fault is Fault.HTTP_5XX:
            assert len(faulty.faulted(case.fault)) == 3  # the request and its 2 retries
        assert took < 30, took
        assert_chain_matches_ledger(chain, devnet, session.rt.ledger, before, nonce0)
    finally:
        session.close()


@pytest.mark.parametrize("name", list(CASES))
def test_a_faulty_only_endpoint_fails_cycles_on_record_and_then_the_bot_is_in_error(
        name: str, test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    case, (faulty, _) = CASES[name], proxies
    session = Session(test_env, [faulty.url], **STALE_BOUNDS)
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    try:
        _inject(case, session, faulty, chain)
        traded_before = len(session.orders())
        _gap(chain, devnet)
        if case.fault is Fault.WRONG_CHAIN:
            # Not an outage but another chain: the bot stops at once (the error taxonomy).
            with pytest.raises(SystemFault, match="chain id changed"):
                session.cycle("faulted")
            assert session.rt.state.state is BotState.ERROR
            assert [str(e.kind) for e in session.errors()] == ["system"]
        else:
            assert session.cycle("first") is None  # recorded and skipped: the session goes on
            assert session.rt.state.state is BotState.RUNNING
            [failed] = session.errors()
            assert (str(failed.kind), failed.source) == (case.kind, "cycle.snapshot")
            assert session.guard.summary.failed_cycles == 1
            assert session.metrics.registry.get_sample_value(
                "dexpilot_cycles_total", {"outcome": "error"}) == 1
            assert session.cycle("second") is None
            assert session.rt.state.state is BotState.ERROR
            last = rows(session.rt.ledger, StateTransitionRow)[-1]
            assert (last.from_state, last.to_state) == ("RUNNING", "ERROR")
            assert "2 consecutive trading cycles failed" in last.reason, last
            assert [e.source for e in session.errors()] == [
                "cycle.snapshot", "cycle.snapshot", "trading_session"]
            stale = session.metrics.registry.get_sample_value("dexpilot_chain_head_stale")
            assert stale == (1 if case.fault is Fault.STALE_BLOCK else 0)
        assert len(session.orders()) == traded_before  # nothing traded on a faulty endpoint
        assert_chain_matches_ledger(chain, devnet, session.rt.ledger, before, nonce0)
    finally:
        session.close()


def test_retry_after_is_honoured_and_a_short_fault_costs_no_cycle(
        test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    faulty, _ = proxies
    session = Session(test_env, [faulty.url])
    try:
        _gap(chain, devnet)
        faulty.inject(Fault.HTTP_429, retry_after=1.0, times=1)
        report = session.cycle("rate-limited")
        assert report is not None and report.executions
        assert all(e.filled for e in report.executions)
        [limited] = faulty.faulted(Fault.HTTP_429)
        after = next(r for r in faulty.requests if r.at > limited.at)
        assert after.at - limited.at >= 1.0  # the endpoint asked for 1 s; the default is 0.05
        assert session.errors() == []
    finally:
        session.close()


def test_a_retry_after_beyond_the_bound_switches_without_waiting(
        test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    faulty, healthy = proxies
    session = Session(test_env, [faulty.url, healthy.url], rpc_max_retry_after_s=5.0)
    try:
        faulty.inject(Fault.HTTP_429, retry_after=600)
        started = time.monotonic()
        report = session.cycle("idle")
        assert report is not None and time.monotonic() - started < 5.0
        assert len(faulty.faulted(Fault.HTTP_429)) == 1
        assert session.rt.client.url == healthy.url
    finally:
        session.close()


def test_the_pre_send_reads_fail_over_and_an_order_fails_only_when_no_endpoint_serves_it(
        test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    """The nonce is read only right before signing: a 503 there is the executor's to handle."""
    faulty, healthy = proxies
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    session = Session(test_env, [faulty.url, healthy.url])
    try:
        _gap(chain, devnet)
        faulty.inject(Fault.HTTP_5XX, methods={"eth_getTransactionCount"})
        report = session.cycle("nonce-503")
        assert report is not None and report.executions
        assert all(o.status is OrderStatus.FILLED for o in session.orders()), session.orders()
        assert len(faulty.faulted(Fault.HTTP_5XX)) == 3
        assert session.rt.client.url == healthy.url
    finally:
        session.close()
    faulty.heal()
    alone = Session(test_env, [faulty.url])
    try:
        faulty.inject(Fault.ERROR_OBJECT, methods={"eth_getTransactionCount"})
        _gap(chain, devnet)
        nonce = pending_nonce(chain, devnet.hot_wallet)
        report = alone.cycle("nonce-error")
        assert report is not None and report.executions
        first = report.executions[0]
        assert first.status is OrderStatus.FAILED and "before sending" in (first.error or "")
        assert "internal error" in (first.error or "")
        assert pending_nonce(chain, devnet.hot_wallet) == nonce  # nothing was signed or sent
        assert len(report.executions) == 1  # the arbitrage's second leg is not traded alone
    finally:
        alone.close()
    ledger_session = Session(test_env, [healthy.url])
    try:
        assert_chain_matches_ledger(chain, devnet, ledger_session.rt.ledger, before, nonce0)
    finally:
        ledger_session.close()


@pytest.mark.parametrize("fault", [Fault.DROP_SEND_BEFORE, Fault.DROP_SEND_AFTER])
def test_a_dropped_send_is_resent_on_the_healthy_endpoint_and_lands_once(
        fault: Fault, test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    faulty, healthy = proxies
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    session = Session(test_env, [faulty.url, healthy.url])
    try:
        _gap(chain, devnet)
        faulty.inject(fault)
        report = session.cycle("dropped")
        assert report is not None and report.executions
        assert all(o.status is OrderStatus.FILLED for o in session.orders()), session.orders()
        assert len(faulty.faulted(fault)) == 3  # the send and its two retries
        assert any(SEND in r.methods for r in healthy.requests)
        assert session.rt.state.state is BotState.RUNNING
        assert_chain_matches_ledger(chain, devnet, session.rt.ledger, before, nonce0)
    finally:
        session.close()


@pytest.mark.parametrize("fault", [Fault.DROP_SEND_BEFORE, Fault.DROP_SEND_AFTER])
def test_a_dropped_send_on_the_only_endpoint_is_settled_by_the_next_reconcile(
        fault: Fault, test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    faulty, _ = proxies
    before, nonce0 = balances(chain, devnet), nonce_of(chain, devnet.hot_wallet)
    session = Session(test_env, [faulty.url])
    try:
        _gap(chain, devnet)
        faulty.inject(fault)
        report = session.cycle("dropped")
        assert report is not None
        # The first send of the first leg got no answer, so nothing more goes out. If it was
        # the swap, the order waits SUBMITTED; if it was the swap's approval, the order failed
        # unsent and the approval waits in the ledger.
        [sent] = report.executions
        if sent.status is OrderStatus.FAILED:
            assert "its approval failed" in (sent.error or ""), sent
        else:
            assert sent.status is OrderStatus.SUBMITTED, sent
        assert session.rt.ledger.unresolved_transactions(devnet.hot_wallet, env="test")
        assert session.rt.state.state is BotState.RUNNING
        faulty.heal()
        after = session.cycle("reconciled")
        assert after is not None
        if sent.status is OrderStatus.SUBMITTED:
            assert [(r.client_order_id, r.status) for r in after.reconciled] == [
                (sent.client_order_id, OrderStatus.FILLED)]
        assert not session.rt.ledger.unresolved_transactions(devnet.hot_wallet, env="test")
        assert all(o.status not in (OrderStatus.NEW, OrderStatus.SUBMITTED)
                   for o in session.orders())
        assert_chain_matches_ledger(chain, devnet, session.rt.ledger, before, nonce0)
    finally:
        session.close()


def test_failover_returns_to_the_first_endpoint_once_it_answers_again(
        test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
        proxies: tuple[RpcProxy, RpcProxy]) -> None:
    faulty, healthy = proxies
    session = Session(test_env, [faulty.url, healthy.url], rpc_probe_interval_s=1.0)
    switches: list[tuple[float, str]] = []
    session.rt.client.on_switch = lambda old, new: switches.append((time.monotonic(), new))
    try:
        faulty.inject(Fault.HTTP_5XX)
        assert session.cycle("down") is not None
        assert session.rt.client.url == healthy.url
        faulty.heal()
        deadline = time.monotonic() + 20
        while session.rt.client.url != faulty.url and time.monotonic() < deadline:
            assert session.cycle("probe") is not None
        assert [url for _, url in switches] == [healthy.url, faulty.url]
        assert switches[1][0] - switches[0][0] >= 1.0  # not before the probe interval
        before = len(faulty.requests)
        assert session.cycle("back") is not None
        assert len(faulty.requests) > before  # the preferred endpoint serves the cycle again
    finally:
        session.close()
