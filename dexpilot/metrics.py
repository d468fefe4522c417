"""Prometheus metrics of the bot: one registry per process, pushed by flow runs, served by
long-running sessions.

Names follow Prometheus conventions: a ``dexpilot_`` prefix, base units in the name
(``_seconds``, ``_wei``, ``_quote`` for whole units of the strategy's quote token), ``_total``
for counters. Every series carries no ``env`` label itself: flow runs push under the grouping
key ``{job, environment}`` (``pushadd_to_gateway``: only the metrics pushed are replaced), and a
scrape of ``/metrics`` gets its ``environment`` from the scrape config.

``Metrics`` is fed by hooks, so the core needs no metric calls of its own:

- ``attach(rt)`` sets the RPC client's request observer (latency and errors by redacted
  endpoint, failovers) and the state machine's transition observer (bot state gauges);
- ``observe_cycle(report, rt)`` / ``observe_failed_cycle(report, rt, error)`` read the typed
  ``CycleReport`` (``dexpilot.trading.cycle.observed_cycle`` hands it over): outcome, step
  durations, signals by model, wallet value and gas balance, venue quote errors, orders,
  fills, rejections, errors and the last-success timestamp.

This module never imports Prefect (the core rule); ``tasks/`` and ``flows/`` call it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    pushadd_to_gateway,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from dexpilot.chain.freshness import StaleHeadError
from dexpilot.config import redact_url
from dexpilot.errors import ApiError, NetworkError
from dexpilot.ledger import ErrorKind, Ledger, views
from dexpilot.state import BotState, Transition

if TYPE_CHECKING:
    from dexpilot.trading.cycle import CycleReport, TradingRuntime

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DEFAULT_JOB = "dexpilot"

# name -> label names: the public contract (dashboards and alert rules use these; a test
# compares this table with what the registry exports, so a rename fails it).
METRICS: dict[str, tuple[str, ...]] = {
    "dexpilot_cycle_step_duration_seconds": ("step",),
    "dexpilot_cycle_duration_seconds": (),
    "dexpilot_cycles_total": ("outcome",),
    "dexpilot_signals_total": ("model",),
    "dexpilot_order_intents_total": (),
    "dexpilot_orders_total": ("outcome",),
    "dexpilot_risk_rejections_total": ("rule",),
    "dexpilot_fills_total": (),
    "dexpilot_realized_pnl_today_quote": ("token",),
    "dexpilot_wallet_value_quote": ("token",),
    "dexpilot_wallet_gas_balance_wei": (),
    "dexpilot_profit_swept_quote_total": ("token",),
    "dexpilot_rpc_request_duration_seconds": ("endpoint",),
    "dexpilot_rpc_errors_total": ("endpoint", "kind"),
    "dexpilot_rpc_failovers_total": (),
    "dexpilot_venue_quote_errors_total": ("venue", "kind"),
    "dexpilot_bot_state": ("state",),
    "dexpilot_errors_total": ("kind",),
    "dexpilot_last_successful_cycle_timestamp_seconds": (),
    "dexpilot_last_successful_analysis_timestamp_seconds": (),
    "dexpilot_last_successful_backup_timestamp_seconds": (),
    "dexpilot_cycle_interval_seconds": (),
    "dexpilot_risk_daily_loss_limit_quote": ("token",),
    "dexpilot_risk_min_gas_balance_wei": (),
    "dexpilot_tokens_quarantined": (),
    "dexpilot_chain_head_stale": (),
}


class _LedgerErrors(Collector):
    """``dexpilot_errors_total{kind}``: the counts of the ledger's ``errors`` table, as last
    read by ``Metrics.observe_ledger_errors`` (so pushes and scrapes never touch the DB)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {kind.value: 0 for kind in ErrorKind}

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("dexpilot_errors", "Errors recorded in the ledger, by kind",
                                     labels=["kind"])
        for kind, count in sorted(self.counts.items()):
            family.add_metric([kind], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return self.collect()


class Metrics:
    """Every metric of one process, in its own ``CollectorRegistry`` (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.step_seconds = Histogram(
            "dexpilot_cycle_step_duration_seconds", "Duration of one trading-cycle step",
            ["step"], buckets=STEP_BUCKETS, registry=r)
        self.cycle_seconds = Histogram(
            "dexpilot_cycle_duration_seconds", "Duration of a whole trading cycle",
            buckets=STEP_BUCKETS, registry=r)
        self.cycles = Counter("dexpilot_cycles", "Trading cycles by outcome "
                              "(traded, idle, skipped, error)", ["outcome"], registry=r)
        self.signals = Counter("dexpilot_signals", "Signals by model", ["model"], registry=r)
        self.intents = Counter("dexpilot_order_intents", "Order intents planned by strategies",
                               registry=r)
        self.orders = Counter("dexpilot_orders", "Orders (legs) by final status",
                              ["outcome"], registry=r)
        self.rejections = Counter("dexpilot_risk_rejections", "Risk rejections by rule",
                                  ["rule"], registry=r)
        self.fills = Counter("dexpilot_fills", "Fills (live or simulated)", registry=r)
        self.pnl_today = Gauge(
            "dexpilot_realized_pnl_today_quote",
            "Today's (UTC) realized PnL of wallet A, gas included, as the daily loss limit sees "
            "it (dexpilot.ledger.pnl), in whole quote tokens", ["token"], registry=r)
        self.wallet_value = Gauge(
            "dexpilot_wallet_value_quote",
            "Wallet A's token holdings valued in whole quote tokens (gas money excluded)",
            ["token"], registry=r)
        self.gas_balance = Gauge("dexpilot_wallet_gas_balance_wei",
                                 "Wallet A's native (gas) balance in wei", registry=r)
        self.swept = Counter("dexpilot_profit_swept_quote",
                             "Profit swept from wallet A to wallet B, in whole quote tokens",
                             ["token"], registry=r)
        self.rpc_seconds = Histogram(
            "dexpilot_rpc_request_duration_seconds", "JSON-RPC request latency by endpoint "
            "(redacted: scheme and host only)", ["endpoint"], buckets=RPC_BUCKETS, registry=r)
        self.rpc_errors = Counter("dexpilot_rpc_errors", "JSON-RPC request errors by endpoint "
                                  "and kind (network, api)", ["endpoint", "kind"], registry=r)
        self.failovers = Counter("dexpilot_rpc_failovers",
                                 "Switches to the next RPC endpoint", registry=r)
        self.venue_errors = Counter("dexpilot_venue_quote_errors",
                                    "Venues the router skipped because their quote failed",
                                    ["venue", "kind"], registry=r)
        self.bot_state = Gauge("dexpilot_bot_state", "1 for the bot's current state, else 0",
                               ["state"], registry=r)
        self.last_cycle = Gauge("dexpilot_last_successful_cycle_timestamp_seconds",
                                "Unix time the last trading cycle completed", registry=r)
        self.last_analysis = Gauge("dexpilot_last_successful_analysis_timestamp_seconds",
                                   "Unix time the last analysis run completed", registry=r)
        self.last_backup = Gauge("dexpilot_last_successful_backup_timestamp_seconds",
                                 "Unix time the last ledger backup completed", registry=r)
        self.cycle_interval = Gauge("dexpilot_cycle_interval_seconds",
                                    "Configured seconds between trading cycles", registry=r)
        self.loss_limit = Gauge("dexpilot_risk_daily_loss_limit_quote",
                                "Configured daily loss limit, in whole quote tokens",
                                ["token"], registry=r)
        self.min_gas = Gauge("dexpilot_risk_min_gas_balance_wei",
                             "Configured minimum gas balance of wallet A, in wei", registry=r)
        self.quarantined = Gauge("dexpilot_tokens_quarantined",
                                 "Tokens the bot will not buy until an operator clears them",
                                 registry=r)
        self.head_stale = Gauge(
            "dexpilot_chain_head_stale",
            "1 while the last cycle found every RPC endpoint's head stuck or too old "
            "(dexpilot.chain.freshness), else 0", registry=r)
        self._errors = _LedgerErrors()
        r.register(self._errors)
        self._lock = threading.Lock()
        # The last cycle's prices and gas price: today's PnL is valued with them.
        self._prices: dict[str, float] | None = None
        self._gas_price_wei = 0

    # -- hooks into the core ------------------------------------------------------------
    def attach(self, rt: TradingRuntime) -> None:
        """Observe ``rt``'s RPC client and state machine; export its configured limits."""
        config = rt.config
        rt.client.on_request = self.observe_rpc
        rt.client.on_switch = self.observe_failover
        rt.state.on_transition = self.observe_transition
        self.set_state(rt.state.state)
        self.cycle_interval.set(config.strategy.cycle_interval_s)
        self.loss_limit.labels(rt.quote.symbol).set(
            config.risk.daily_loss_limit_quote / 10**rt.quote.decimals)
        self.min_gas.set(config.risk.min_gas_balance_wei)
        # Known label values start at 0, so rates and dashboards have series before the first
        # event (Prometheus' advice for counters).
        self.swept.labels(rt.quote.symbol)
        for outcome in ("traded", "idle", "skipped", "error"):
            self.cycles.labels(outcome)
        for url in rt.client.urls:
            for kind in ("network", "api"):
                self.rpc_errors.labels(redact_url(url), kind)
        for venue in rt.venues:
            for kind in ("network", "api"):
                self.venue_errors.labels(venue, kind)

    def observe_rpc(self, url: str, seconds: float, error: Exception | None) -> None:
        endpoint = redact_url(url)
        self.rpc_seconds.labels(endpoint).observe(seconds)
        if error is not None:
            kind = "network" if isinstance(error, NetworkError) else \
                "api" if isinstance(error, ApiError) else "other"
            self.rpc_errors.labels(endpoint, kind).inc()

    def observe_failover(self, old_url: str, new_url: str) -> None:
        self.failovers.inc()

    def observe_transition(self, transition: Transition) -> None:
        self.set_state(transition.to_state)

    def set_state(self, state: BotState) -> None:
        for member in BotState:
            self.bot_state.labels(member.value).set(1 if member is state else 0)

    def observe_cycle(self, report: CycleReport, rt: TradingRuntime | None = None) -> None:
        self._observe_report(report, rt)
        self.cycles.labels(report.outcome).inc()
        self.last_cycle.set(time.time())
        if rt is not None:
            self.observe_ledger(rt)

    def observe_failed_cycle(self, report: CycleReport, rt: TradingRuntime | None = None,
                             error: BaseException | None = None) -> None:
        """A cycle that raised: what it got to before (its report) and its outcome ``error``;
        a stale head everywhere sets ``dexpilot_chain_head_stale``."""
        self._observe_report(report, rt)
        self.cycles.labels("error").inc()
        if isinstance(error, StaleHeadError):
            self.head_stale.set(1)
        if rt is not None:
            self.observe_ledger(rt)

    def _observe_report(self, report: CycleReport, rt: TradingRuntime | None) -> None:
        for step, seconds in report.step_seconds.items():
            self.step_seconds.labels(step).observe(seconds)
        self.cycle_seconds.observe(sum(report.step_seconds.values()))
        if report.market is not None:
            self._prices = report.market.prices
            if rt is not None:
                self.wallet_value.labels(rt.quote.symbol).set(
                    report.market.wallet_value_quote / 10**rt.quote.decimals)
            self.gas_balance.set(report.market.gas_balance_wei)
            self.head_stale.set(0)
        if report.gas_price_wei is not None:
            self._gas_price_wei = report.gas_price_wei
        for model, count in report.signals_by_model.items():
            self.signals.labels(model).inc(count)
        for venue, kind in report.venue_failures:
            self.venue_errors.labels(venue, kind).inc()
        self.intents.inc(report.intents)
        for rule, count in report.rejected.items():
            self.rejections.labels(rule).inc(count)
        for result in [*report.reconciled, *report.executions]:
            self.orders.labels(result.status.value.lower()).inc()
            if result.filled:
                self.fills.inc()

    def observe_ledger(self, rt: TradingRuntime) -> None:
        """Today's realized PnL (at the last snapshot's prices) and the error counts, read from
        the ledger."""
        from dexpilot.trading.cycle import realized_pnl_today_quote

        with suppress(Exception):  # a ledger hiccup must not fail the cycle over its metrics
            if self._prices is not None:
                self.pnl_today.labels(rt.quote.symbol).set(
                    realized_pnl_today_quote(rt, self._prices, self._gas_price_wei)
                    / 10**rt.quote.decimals)
            self.observe_ledger_errors(rt.ledger, rt.config.env)
            self.quarantined.set(len(rt.ledger.active_quarantines(rt.config.env)))

    def observe_ledger_errors(self, ledger: Ledger, env: str) -> None:
        counts = {kind.value: 0 for kind in ErrorKind}
        for kind, by_source in views.error_counts(ledger, env).items():
            counts[kind] = sum(by_source.values())
        self._errors.counts = counts

    def profit_swept(self, token: str, amount_whole: float) -> None:
        self.swept.labels(token).inc(amount_whole)

    def analysis_done(self) -> None:
        self.last_analysis.set(time.time())

    def backup_done(self) -> None:
        self.last_backup.set(time.time())

    # -- export ---------------------------------------------------------------------------
    def push(self, gateway: str, env: str, job: str = DEFAULT_JOB, *,
             timeout: float = 5.0) -> None:
        """Add this process's metrics to the Pushgateway group ``{job, environment}``."""
        with self._lock:
            pushadd_to_gateway(gateway, job=job, registry=self.registry,
                               grouping_key={"environment": env}, timeout=timeout)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``addr:port`` (a long-running session); returns the server."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def exported(self) -> dict[str, tuple[str, ...]]:
        """Name -> label names of every metric this registry exports (for the contract test)."""
        out: dict[str, tuple[str, ...]] = {}
        for family in self.registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels: set[str] = set()
            for sample in family.samples:
                labels |= set(sample.labels) - {"le"}
            out[name] = tuple(sorted(labels))
        return out


_process: dict[str, Metrics] = {}
_process_lock = threading.Lock()


def process_metrics() -> Metrics:
    """This process's ``Metrics`` (created on first use, in its own registry)."""
    with _process_lock:
        if "m" not in _process:
            _process["m"] = Metrics()
        return _process["m"]

