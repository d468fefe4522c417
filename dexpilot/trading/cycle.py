"""One trading cycle as named steps, each a plain function over a ``TradingRuntime``.

The Prefect flows compose these steps as tasks; tests and benchmarks call them directly.
Every risk decision is recorded; only approved orders reach the executor; a ``SystemFault``
anywhere moves the bot to ERROR (the caller does that, see ``flows/trading_cycle.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from dexpilot.analysis.signal import Side, Signal
from dexpilot.analysis.spread_model import MODEL as SPREAD_MODEL
from dexpilot.analysis.spread_model import spread_signals
from dexpilot.chain.config_audit import audit_config
from dexpilot.chain.failover import with_failover
from dexpilot.chain.freshness import HeadFreshness
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig, redact_url
from dexpilot.errors import ApiError, NetworkError, SystemFault
from dexpilot.execution.executor import (
    ExecutionResult,
    Executor,
    ExecutorSettings,
    LegPlan,
    swap_deadline,
)
from dexpilot.execution.fees import suggest_fees
from dexpilot.execution.ledger_audit import check_ledger_matches_chain
from dexpilot.execution.sweep import wallet_value_quote
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import (
    ErrorKind,
    Ledger,
    OrderStatus,
    SignalRow,
    TradeMode,
    error_kind_for,
    pnl,
    views,
)
from dexpilot.ledger.balances import (
    NATIVE_TOKEN,
    BalanceCheck,
    compare_balances,
    describe_shortfall,
    known_flows,
    previous_snapshot,
)
from dexpilot.market.pools import MarketSnapshot, PoolRef
from dexpilot.market.price_feed import PriceFeed
from dexpilot.market.reference import PriceReference, V2TwapHistory, reference_for
from dexpilot.market.valuation import quote_prices
from dexpilot.money import Token
from dexpilot.risk import RiskContext, RiskDecision, RiskEngine, TradeProposal, min_amount_out
from dexpilot.risk.token_safety import TokenVerdict
from dexpilot.routing.router import Route, Router
from dexpilot.state import BotStateMachine, LedgerTransitionStore
from dexpilot.strategy.arbitrage import CrossVenueArbitrage
from dexpilot.strategy.base import Strategy, StrategyContext
from dexpilot.strategy.intent import OrderIntent
from dexpilot.strategy.statistical import StatisticalStrategy
from dexpilot.trading.pool_set import PoolSet, apply_audit, quarantine_unreadable
from dexpilot.trading.proposal import proposal_for, traded_pools
from dexpilot.trading.token_safety import TokenSafetyGate
from dexpilot.venues.base import Venue

log = logging.getLogger(__name__)
DEADLINE_S = 120  # swaps revert if not mined within this long after the latest block


@dataclass
class TradingRuntime:
    """Everything a cycle needs, built once per flow run (or per session)."""

    config: AppConfig
    client: RpcClient
    reader: ChainReader
    ledger: Ledger
    venues: dict[str, Venue]
    router: Router
    strategy: Strategy
    risk: RiskEngine
    executor: Executor
    state: BotStateMachine
    quote: Token
    hub: Token
    reference_feed: PriceFeed | None = None
    # Verdicts on the tokens this runtime buys; built on the runtime's own client and ledger.
    token_safety: TokenSafetyGate = field(init=False)
    # The V2 pairs' earlier accumulator values: their TWAPs are measured against these.
    reference_history: V2TwapHistory = field(default_factory=V2TwapHistory)
    # The pools the start-up config audit let through; ``active_pools`` narrows them further.
    pool_set: PoolSet | None = None
    # Whether the endpoint's head still follows the chain (stale: switch endpoint).
    freshness: HeadFreshness = field(default_factory=HeadFreshness)

    def __post_init__(self) -> None:
        self.token_safety = TokenSafetyGate(self.config, self.client, self.ledger)
        self.client.on_failover = failover_recorder(self.ledger, self.config.env)

    @classmethod
    def build(cls, config: AppConfig, signer: HotWallet | None, *,
              executor_settings: ExecutorSettings | None = None,
              extra_venues: Sequence[Venue] = ()) -> TradingRuntime:
        mode = TradeMode(config.strategy.mode)
        if mode is TradeMode.LIVE and signer is None:
            raise SystemFault("live mode needs the hot-wallet key")
        ledger = Ledger(config.ledger.url)
        ledger.upgrade()
        state = BotStateMachine(LedgerTransitionStore(ledger), config.env)
        client = config.chain.client()
        client.on_failover = failover_recorder(ledger, config.env)
        try:
            with_failover(client, lambda: client.verify_chain_id(config.chain.chain_id))
            # A ledger written on another chain (instance) would crash reconcile mid-cycle.
            with_failover(client, lambda: check_ledger_matches_chain(
                ledger, client, env=config.env, wallet=config.wallets.hot,
                chain_id=config.chain.chain_id))
            # Config the chain contradicts: bad tokens are quarantined alone, bad pools and
            # venues left out; a wrong multicall or no usable venue raises SystemFault here.
            audit = with_failover(client, lambda: audit_config(config, client))
            usable = apply_audit(config, audit, ledger,
                                 extra_venues=[v.name for v in extra_venues])
        except SystemFault as exc:
            # Wrong chain (or config): the bot must not trade until an operator has looked.
            state.start()
            state.fault(str(exc))
            ledger.record_error(config.env, ErrorKind.SYSTEM, "startup", str(exc))
            client.close()
            ledger.dispose()
            raise
        pool_set = PoolSet(config, client, ledger, usable, extra_venues)
        _, built = pool_set.refresh()
        venues = built or {}
        hub = config.token(config.chain.weth)
        strategy = strategy_for(config)
        return cls(
            config=config, client=client,
            reader=ChainReader(client, config.chain.multicall,
                               expected_chain_id=config.chain.chain_id),
            ledger=ledger, venues=venues, router=Router(venues, native=hub), strategy=strategy,
            risk=RiskEngine.from_config(config),
            executor=Executor(env=config.env, client=client, ledger=ledger,
                              address=config.wallets.hot, chain_id=config.chain.chain_id,
                              mode=mode, signer=signer,
                              token_symbols={t.address: t.symbol for t in config.tokens},
                              settings=replace(executor_settings or ExecutorSettings(),
                                               max_fee_per_gas_cap=config.risk.max_gas_price_wei)),
            reference_feed=reference_feed_for(config), state=state,
            quote=config.token(config.strategy.quote_token), hub=hub, pool_set=pool_set,
            freshness=HeadFreshness.for_chain(config.chain),
        )

    def active_pools(self) -> list[PoolRef]:
        """The pools this runtime reads and trades now: the ones the start-up audit let
        through minus every pool of a token quarantined now (``Ledger.active_quarantines``).
        The venues, and so the router, are kept on the same pools, so no intent is planned or
        routed on a quarantined token's pool."""
        if self.pool_set is None:
            return self.config.pool_refs()
        pools, venues = self.pool_set.refresh()
        if venues is not None:
            self.venues = venues
            self.router = Router(venues, native=self.hub)
        return pools

    def close(self) -> None:
        if self.reference_feed is not None:
            self.reference_feed.close()
        self.client.close()
        self.ledger.dispose()


def failover_recorder(ledger: Ledger, env: str) -> Callable[[str, str, Exception], None]:
    """Every endpoint switch becomes an error row (of the kind of the error that caused it):
    the cycle went on, and the errors view still shows which endpoint failed and how."""

    def record(old_url: str, new_url: str, error: Exception) -> None:
        ledger.record_error(env, error_kind_for(error), "rpc.failover",
                            f"{redact_url(old_url)} failed, switched to {redact_url(new_url)}: "
                            f"{error}")

    return record


@dataclass
class RoutedOrder:
    intent: OrderIntent
    route: Route | None
    proposal: TradeProposal | None = None
    decision: RiskDecision | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MarketView:
    """Wallet A at the cycle's snapshot, valued once: what the metrics show of it."""

    prices: dict[str, float]  # whole quote tokens per whole token, by symbol
    wallet_value_quote: int   # raw quote units, gas money excluded
    gas_balance_wei: int


@dataclass
class CycleReport:
    """What one cycle did, filled in as its steps run (so a failed cycle's report still holds
    what it got to): the one thing the metrics, the session summary and the flows read."""

    cycle_id: str
    block_number: int = 0
    signals: int = 0
    intents: int = 0
    approved: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    executions: list[ExecutionResult] = field(default_factory=list)
    reconciled: list[ExecutionResult] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    skipped_reason: str | None = None
    failed_step: str | None = None  # the step whose error ended the cycle
    market: MarketView | None = None
    gas_price_wei: int | None = None
    signals_by_model: dict[str, int] = field(default_factory=dict)
    # Venues the router skipped because their quote failed: (venue, "network" | "api").
    venue_failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``skipped``, ``traded`` or ``idle`` (a failed cycle raises instead)."""
        if self.skipped_reason is not None:
            return "skipped"
        return "traded" if self.executions else "idle"


# -- the steps --------------------------------------------------------------------------
def reconcile(rt: TradingRuntime) -> list[ExecutionResult]:
    return rt.executor.reconcile()


def read_snapshot(rt: TradingRuntime) -> MarketSnapshot:
    """Pools (with their TWAP data), balances and the block in one round trip; each snapshot
    is kept as a V2 TWAP observation, whether or not this cycle trades."""
    tokens = [t.token() for t in rt.config.tokens]
    window = rt.config.risk.reference_twap_window_s
    pools = rt.active_pools()

    def fresh_snapshot() -> MarketSnapshot:
        snap = rt.reader.snapshot(pools, tokens, [rt.config.wallets.hot], twap_window_s=window)
        rt.freshness.check(snap.block_number, snap.block_timestamp, rt.client.url)
        return snap

    snapshot = with_failover(rt.client, fresh_snapshot)
    if snapshot.unreadable_tokens:
        # A token whose balance cannot be read is quarantined alone, its pools dropped from
        # this snapshot and (through active_pools) from the router; the others trade on.
        snapshot = quarantine_unreadable(rt.config, rt.ledger, snapshot)
        rt.active_pools()
    rt.reference_history.record(snapshot, window)
    return snapshot


def reconcile_balances(rt: TradingRuntime, snapshot: MarketSnapshot) -> BalanceCheck | None:
    """Store wallet A's balances of this snapshot and check them against the ledger.

    A shortfall that the ledger's fills, gas and sweeps since the previous snapshot do not
    explain is a ``SystemFault`` naming each token and both numbers (the snapshot is stored
    first, as evidence); deposits are logged only (``dexpilot.ledger.balances`` says why).
    The comparison is skipped, with a log line, while a transaction of wallet A is unresolved
    (it may be mined without a fill in the ledger yet) and when the chain is behind the
    previous snapshot (a rewound dev chain: its history is not the one recorded).
    """
    wallet = rt.config.wallets.hot
    current = {t.address: snapshot.token_balances[(wallet, t.address)]
               for t in rt.config.tokens if (wallet, t.address) in snapshot.token_balances}
    if wallet in snapshot.native_balances:
        current[NATIVE_TOKEN] = snapshot.native_balances[wallet]
    previous = previous_snapshot(rt.ledger, wallet)
    rt.ledger.record_balance_snapshots(current, wallet=wallet,
                                       block_number=snapshot.block_number)
    if previous is None:
        return None
    block, balances = previous
    if snapshot.block_number < block:
        log.warning("balance check skipped: block %d is behind the previous snapshot's %d",
                    snapshot.block_number, block)
        return None
    if rt.ledger.unresolved_transactions(wallet, env=rt.config.env):
        log.info("balance check skipped: wallet A has unresolved transactions")
        return None
    flows = known_flows(rt.ledger, env=rt.config.env, wallet=wallet, after_block=block,
                        to_block=snapshot.block_number)
    check = compare_balances(balances, flows, current)
    symbols = {t.address: t.symbol for t in rt.config.tokens} | {NATIVE_TOKEN: "native"}
    for deposit in check.deposits:
        log.info("wallet A received %d of %s that no fill explains (a deposit)",
                 deposit.difference, symbols.get(deposit.token, deposit.token))
    if check.shortfalls:
        raise SystemFault(
            f"wallet A's balances at block {snapshot.block_number} are below what the ledger "
            f"expects since block {block}: "
            + "; ".join(describe_shortfall(d, symbols.get(d.token, d.token))
                        for d in check.shortfalls))
    return check


def generate_signals(rt: TradingRuntime, snapshot: MarketSnapshot) -> list[Signal]:
    """This snapshot's cross-venue spreads (recorded), plus the candle models' signals the
    analysis flow stored that are still within their horizon: analysis runs on its own
    schedule, trading reads its conclusions."""
    stored = fresh_model_signals(rt.ledger, datetime.fromtimestamp(snapshot.block_timestamp, UTC))
    signals = spread_signals(snapshot)
    if signals:
        rt.ledger.record_signals(SignalRow(
            model=s.model, pair=s.pair, side=s.side.value, edge_bps=s.edge_bps,
            confidence=s.confidence, horizon_s=int(s.horizon_s),
            inputs_from=s.inputs_from or datetime.now(UTC),
            inputs_to=s.inputs_to or datetime.now(UTC), payload=dict(s.details),
        ) for s in signals)
    return signals + stored


def fresh_model_signals(ledger: Ledger, now: datetime,
                        window: timedelta = timedelta(hours=1)) -> list[Signal]:
    """Stored signals of the candle models whose horizon has not yet passed at ``now``."""
    rows = views.signals_since(ledger, now - window, except_model=SPREAD_MODEL)
    live = []
    for row in rows:
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        if created + timedelta(seconds=row.horizon_s) >= now:
            live.append(Signal(row.model, row.pair, Side(row.side), row.edge_bps,
                               row.confidence, float(row.horizon_s), row.inputs_from,
                               row.inputs_to, dict(row.payload)))
    return live


def strategy_for(config: AppConfig) -> Strategy:
    params = config.strategy.params
    if config.strategy.name == "statistical":
        return StatisticalStrategy(
            min_edge_bps=float(params.get("min_edge_bps", 0.0)),
            min_confidence=float(params.get("min_confidence", 0.3)),
            size_fraction=float(params.get("size_fraction", 0.5)),
        )
    return CrossVenueArbitrage(min_profit_bps=float(params.get("min_profit_bps", 5.0)))


def balances_by_symbol(rt: TradingRuntime, snapshot: MarketSnapshot) -> dict[str, int]:
    wallet = rt.config.wallets.hot
    return {t.symbol: snapshot.token_balances.get((wallet, t.address), 0)
            for t in rt.config.tokens}


def plan_orders(rt: TradingRuntime, signals: Sequence[Signal], snapshot: MarketSnapshot,
                gas_price_wei: int, cycle_id: str) -> list[OrderIntent]:
    prices = quote_prices(snapshot, rt.quote, rt.hub)
    context = StrategyContext(
        snapshot=snapshot, wallet=rt.config.wallets.hot, quote_token=rt.quote,
        balances=balances_by_symbol(rt, snapshot), max_trade_quote=rt.config.risk.max_trade_quote,
        gas_price_wei=gas_price_wei, native_price_quote=prices.get(rt.hub.symbol, 0.0),
        cycle_id=cycle_id, params=rt.config.strategy.params, prices=prices,
    )
    return rt.strategy.orders(signals, context)


def route_orders(rt: TradingRuntime, intents: Sequence[OrderIntent], snapshot: MarketSnapshot,
                 gas_price_wei: int) -> list[RoutedOrder]:
    routed: list[RoutedOrder] = []
    for intent in intents:
        previous = routed[-1] if routed else None
        if (previous is not None and previous.route is not None and intent.group_id
                and previous.intent.group_id == intent.group_id
                and previous.intent.token_out == intent.token_in):
            # A chained leg sells what the previous leg's exact quote delivers, so an
            # inventory round trip ends flat in the middle token.
            intent = replace(intent, amount_in=previous.route.amount_out)
        try:
            route = rt.router.route(intent, snapshot, gas_price_wei=gas_price_wei)
        except (ApiError, NetworkError) as exc:
            routed.append(RoutedOrder(intent, None, error=f"no route: {exc}"))
            continue
        routed.append(RoutedOrder(intent, route))
    return routed


def check_tokens(rt: TradingRuntime, routed: Sequence[RoutedOrder],
                 snapshot: MarketSnapshot) -> dict[str, TokenVerdict]:
    """The token-safety verdict of every token the routed orders buy (simulated where no
    valid verdict is stored)."""
    buys = [(o.intent, o.route) for o in routed if o.route is not None]
    return rt.token_safety.verdicts(buys, snapshot)


def quarantined_tokens(rt: TradingRuntime) -> dict[str, str]:
    """Token symbol -> why it is quarantined (tokens not in the config are left out)."""
    symbols = {t.address: t.symbol for t in rt.config.tokens}
    return {symbols[row.token]: f"{row.source}: {row.reason}"
            for row in rt.ledger.active_quarantines(rt.config.env) if row.token in symbols}


def check_risk(rt: TradingRuntime, routed: Sequence[RoutedOrder], snapshot: MarketSnapshot,
               gas_price_wei: int,
               token_verdicts: dict[str, TokenVerdict] | None = None) -> list[RoutedOrder]:
    prices = quote_prices(snapshot, rt.quote, rt.hub)
    slippage = rt.config.risk.max_slippage_bps
    feed = reference_feed_prices(rt) if any(o.route is not None for o in routed) else {}
    proposals = []
    for order in routed:
        if order.route is None:
            rt.ledger.record_risk_decision(order.intent.client_order_id, approved=False,
                                           rule="route", reason=order.error or "no route")
            continue
        order.proposal = proposal_for(order.intent, order.route, prices, rt.quote, slippage,
                                      gas_price_wei, snapshot,
                                      reference=order_reference(rt, order, snapshot, feed))
        proposals.append(order)
    context = RiskContext(
        balances=balances_by_symbol(rt, snapshot), prices=prices,
        traded_today_quote=traded_today_quote(rt, prices),
        realized_pnl_today_quote=realized_pnl_today_quote(rt, prices, gas_price_wei),
        gas_price_wei=gas_price_wei,
        native_balance_wei=snapshot.native_balances.get(rt.config.wallets.hot, 0),
        quarantined=quarantined_tokens(rt),
        token_verdicts=token_verdicts if token_verdicts is not None else {},
    )
    decisions = rt.risk.evaluate_batch([o.proposal for o in proposals if o.proposal], context)
    for order, decision in zip(proposals, decisions, strict=True):
        order.decision = decision
        rt.ledger.record_risk_decision(**decision.record())
    return list(routed)


def reference_feed_for(config: AppConfig) -> PriceFeed | None:
    feed = config.reference_feed
    if feed is None:
        return None
    api_key = os.environ.get(feed.api_key_env) if feed.api_key_env else None
    return PriceFeed(feed.url, feed.ids or None, timeout_s=feed.timeout_s,
                     max_age_s=feed.max_age_s, api_key=api_key)


def reference_feed_prices(rt: TradingRuntime) -> dict[str, float]:
    """The external feed's prices (whole quote tokens per whole token), or none.

    A feed that fails or has gone stale is not trusted: the on-chain sources independent of
    each traded pool stand in (``dexpilot.market.reference``), and the fallback is logged, so
    a broken feed neither stops trading nor lets a manipulated pool through.
    """
    if rt.reference_feed is None:
        return {}
    try:
        return rt.reference_feed.prices_in(rt.quote.symbol, [t.symbol for t in rt.config.tokens])
    except (NetworkError, ApiError) as exc:
        log.warning("reference feed unusable (%s); using on-chain references", exc)
        return {}


def order_reference(rt: TradingRuntime, order: RoutedOrder, snapshot: MarketSnapshot,
                    feed: dict[str, float]) -> PriceReference | None:
    """The reference for the routed order's price, from sources none of its pools can move."""
    if order.route is None:
        return None
    return reference_for(
        snapshot, order.intent.token_in, order.intent.token_out,
        traded_pools(order.intent, order.route), window_s=rt.config.risk.reference_twap_window_s,
        history=rt.reference_history, feed=feed, hubs=(rt.hub, rt.quote))


def traded_today_quote(rt: TradingRuntime, prices: dict[str, float]) -> int:
    """Today's (UTC) traded volume of wallet A: every fill's input, valued in the quote token."""
    return pnl.traded_today_quote(
        rt.ledger, env=rt.config.env, wallet=rt.config.wallets.hot, mode=rt.executor.mode,
        tokens=[t.token() for t in rt.config.tokens], prices=prices, quote=rt.quote)


def realized_pnl_today_quote(rt: TradingRuntime, prices: dict[str, float],
                             gas_price_wei: int) -> int:
    """Today's (UTC) realized PnL of wallet A at this cycle's prices, gas included: the daily
    loss limit's input (``dexpilot.ledger.pnl`` defines it, for the backtest too)."""
    today = pnl.realized_pnl_today(
        rt.ledger, env=rt.config.env, wallet=rt.config.wallets.hot, mode=rt.executor.mode,
        tokens=[t.token() for t in rt.config.tokens], prices=prices, quote=rt.quote,
        native=rt.hub, paper_gas_price_wei=gas_price_wei)
    if today.unpriced:
        log.warning("realized PnL today: no price for %s, counted as 0",
                    ", ".join(today.unpriced))
    return today.realized_quote


def execute_approved(rt: TradingRuntime, routed: Sequence[RoutedOrder],
                     snapshot: MarketSnapshot) -> list[ExecutionResult]:
    results: list[ExecutionResult] = []
    failed_groups: set[str] = set()
    deadline = swap_deadline(snapshot.block_timestamp, DEADLINE_S)
    for order in routed:
        if order.decision is None or not order.decision.approved or order.route is None:
            continue
        intent = order.intent
        if intent.group_id in failed_groups:
            continue  # never trade the second leg of an arbitrage whose first leg failed
        for i, leg in enumerate(order.route.legs):
            leg_id = intent.client_order_id if len(order.route.legs) == 1 \
                else f"{intent.client_order_id}.{i + 1}"
            leg_intent = OrderIntent(
                leg_id, intent.strategy, intent.token_in, intent.token_out, leg.amount_in,
                venue=leg.venue, group_id=intent.group_id, reason=intent.reason,
            )
            plan = LegPlan(leg_intent, rt.venues[leg.venue], leg.quote,
                           min_amount_out(leg.amount_out, rt.config.risk.max_slippage_bps),
                           deadline, max_fee_per_gas=approved_gas_price(order))
            try:
                result = rt.executor.execute(plan)
            except NetworkError as exc:
                # Sent but not mined in time: the next cycle's reconcile settles it. Nothing
                # more goes out this cycle, so the wallet's nonces stay in order.
                results.append(ExecutionResult(leg_id, OrderStatus.SUBMITTED, error=str(exc)))
                return results
            results.append(result)
            if result.status is OrderStatus.FAILED and (
                    (result.error or "").startswith("simulation")):
                rt.token_safety.forget(intent.token_in)
                rt.token_safety.forget(intent.token_out)
            if not result.filled and intent.group_id:
                failed_groups.add(intent.group_id)
                break
    return results


def approved_gas_price(order: RoutedOrder) -> int | None:
    """The max fee per gas risk approved the order at: its first send offers no more."""
    return order.proposal.gas_price_wei if order.proposal is not None else None


def current_gas_price(rt: TradingRuntime) -> int:
    """The max fee per gas the cycle's transactions would offer (what the risk caps)."""
    return with_failover(rt.client, lambda: suggest_fees(rt.client).max_fee_per_gas)


@dataclass(frozen=True, slots=True)
class CycleStep:
    """One step of the cycle, declared once: its name (the task run's name, the metrics'
    ``step`` label), its function, and whether a ``NetworkError`` may be retried by the
    orchestrator. Only reads are retried; a step that writes decisions or sends transactions
    runs once (a sent transaction is reconciled by hash and nonce, never re-sent blindly)."""

    name: str
    function: Callable[..., Any]
    retried: bool


RECONCILE = CycleStep("reconcile", reconcile, retried=True)
SNAPSHOT = CycleStep("snapshot", read_snapshot, retried=True)
BALANCES = CycleStep("balances", reconcile_balances, retried=False)
GAS_PRICE = CycleStep("gas_price", current_gas_price, retried=True)
SIGNALS = CycleStep("signals", generate_signals, retried=True)
PLAN = CycleStep("plan", plan_orders, retried=True)
ROUTE = CycleStep("route", route_orders, retried=True)
TOKEN_SAFETY = CycleStep("token_safety", check_tokens, retried=False)
RISK = CycleStep("risk", check_risk, retried=False)
EXECUTE = CycleStep("execute", execute_approved, retried=False)
CYCLE_STEPS = (RECONCILE, SNAPSHOT, BALANCES, GAS_PRICE, SIGNALS, PLAN, ROUTE, TOKEN_SAFETY,
               RISK, EXECUTE)

StepRunner = Callable[..., Any]  # (step: CycleStep, *args) -> the step's result


def call_directly(step: CycleStep, *args: Any) -> Any:
    """The default step runner: no orchestration, just the call (tests, benchmarks)."""
    return step.function(*args)


def run_cycle(rt: TradingRuntime, cycle_id: str | None = None,
              run_step: StepRunner = call_directly, *,
              report: CycleReport | None = None) -> CycleReport:
    """One whole cycle: reconcile, snapshot, signals, orders, route, risk, execute.

    ``run_step(step, *args)`` runs each ``CycleStep``; the Prefect flow passes one that runs
    it as a task with that step's retry policy, so the order of steps and the state handling
    live here once. The steps fill in ``report`` (a new one if none is given) as they go. A
    ``SystemFault`` from any step moves the bot to ERROR; a ``NetworkError`` or ``ApiError``
    that outlived its step's retries and failover is recorded (errors table, source
    ``cycle.<step>``) and raised: the session decides whether to go on
    (``dexpilot.trading.session``).
    """
    report = report if report is not None else CycleReport(cycle_id or new_cycle_id())
    rt.state.start()
    try:
        _run_steps(rt, report, run_step)
    except SystemFault as exc:
        rt.state.fault(str(exc))
        rt.ledger.record_error(rt.config.env, ErrorKind.SYSTEM, "trading_cycle", str(exc))
        raise
    except (NetworkError, ApiError) as exc:
        rt.ledger.record_error(rt.config.env, error_kind_for(exc),
                               f"cycle.{report.failed_step or 'unknown'}", str(exc))
        raise
    return report


def new_cycle_id() -> str:
    return f"c{int(time.time() * 1000)}"


def _run_steps(rt: TradingRuntime, report: CycleReport, run_step: StepRunner) -> None:
    def step(declared: CycleStep, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return run_step(declared, *args)
        except Exception:
            report.failed_step = declared.name
            raise
        finally:
            report.step_seconds[declared.name] = time.perf_counter() - started

    report.reconciled = step(RECONCILE, rt)
    # A cycle runs only while its caller holds wallet A's lock (the flows take it; tests and
    # benchmarks run alone), so TRADING here was left by a trader that died holding it: what
    # it sent was settled by the reconcile just done; its TRADING ends now.
    recovered = rt.state.recover_orphaned_trade(
        f"cycle {report.cycle_id} found the bot TRADING while holding the wallet lock: the "
        f"previous trader died mid-trade; its orders were reconciled "
        f"({len(report.reconciled)} settled)")
    if recovered is not None:
        log.warning("%s: %s -> %s by %s: %s", rt.config.env, recovered.from_state.value,
                    recovered.to_state.value, recovered.actor, recovered.reason)
    if not rt.state.may_trade():
        report.skipped_reason = f"bot is {rt.state.state.value}"
        return
    snapshot: MarketSnapshot = step(SNAPSHOT, rt)
    report.block_number = snapshot.block_number
    report.market = market_view(rt, snapshot)
    step(BALANCES, rt, snapshot)
    gas_price: int = step(GAS_PRICE, rt)
    report.gas_price_wei = gas_price
    signals: list[Signal] = step(SIGNALS, rt, snapshot)
    report.signals = len(signals)
    for s in signals:
        report.signals_by_model[s.model] = report.signals_by_model.get(s.model, 0) + 1
    intents = step(PLAN, rt, signals, snapshot, gas_price, report.cycle_id)
    report.intents = len(intents)
    if not intents:
        return
    routed: list[RoutedOrder] = step(ROUTE, rt, intents, snapshot, gas_price)
    report.venue_failures = [(f.venue, f.kind) for o in routed if o.route is not None
                             for f in o.route.skipped if f.kind != "unsupported"]
    verdicts = step(TOKEN_SAFETY, rt, routed, snapshot)
    checked: list[RoutedOrder] = step(RISK, rt, routed, snapshot, gas_price, verdicts)
    for order in checked:
        if order.decision is not None and order.decision.approved:
            report.approved += 1
        else:
            rule = order.decision.rule if order.decision else "route"
            report.rejected[rule] = report.rejected.get(rule, 0) + 1
    fault = next((o.decision for o in checked
                  if o.decision is not None and o.decision.system_fault), None)
    if fault is not None:
        raise SystemFault(fault.reason)
    if not report.approved:
        return
    rt.state.begin_trading(f"cycle {report.cycle_id}: {report.approved} orders")
    try:
        report.executions = step(EXECUTE, rt, checked, snapshot)
    finally:
        rt.state.end_trading()


def market_view(rt: TradingRuntime, snapshot: MarketSnapshot) -> MarketView:
    prices = quote_prices(snapshot, rt.quote, rt.hub)
    value = wallet_value_quote(balances_by_symbol(rt, snapshot),
                               [t.token() for t in rt.config.tokens], prices, rt.quote)
    return MarketView(prices, value, snapshot.native_balances.get(rt.config.wallets.hot, 0))


class CycleObserver(Protocol):
    """What watches cycles (``dexpilot.metrics.Metrics``): it reads the report, nothing else."""

    def observe_cycle(self, report: CycleReport, rt: TradingRuntime) -> None: ...

    def observe_failed_cycle(self, report: CycleReport, rt: TradingRuntime,
                             error: BaseException) -> None: ...


def observed_cycle(rt: TradingRuntime, observer: CycleObserver, cycle_id: str | None = None,
                   run_step: StepRunner = call_directly) -> CycleReport:
    """``run_cycle`` with its report handed to ``observer``, on success and on failure (with
    whatever the failed cycle got to); re-raises failures."""
    report = CycleReport(cycle_id or new_cycle_id())
    try:
        run_cycle(rt, run_step=run_step, report=report)
    except Exception as exc:
        with suppress(Exception):  # observing must never hide the cycle's own error
            observer.observe_failed_cycle(report, rt, exc)
        raise
    observer.observe_cycle(report, rt)
    return report
