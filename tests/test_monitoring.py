"""Monitoring end to end: real Prometheus, Pushgateway and Alertmanager on loopback, the dev
chain, the bot's metrics, alert rules, dashboard queries, JSON logs and the errors view."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments.monitoring.local import HERE, MonitoringStack, check_commands
from dexpilot.chain.anvil import AnvilProcess, free_port
from dexpilot.chain.failover import with_failover
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig
from dexpilot.errors import SystemFault
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import ErrorKind, Ledger
from dexpilot.ledger.views import error_counts, error_timeline
from dexpilot.logs import JsonFormatter, mask, register_secret, setup_logging
from dexpilot.metrics import METRICS, Metrics
from dexpilot.state import BotState
from dexpilot.trading.cycle import TradingRuntime, observed_cycle
from settings.files import load_config
from tasks.metrics import push_metrics
from tests.fixtures.monitoring import WebhookReceiver

ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY_HEX = ANVIL_KEY_1[2:]
DASHBOARD = HERE / "grafana" / "dashboards" / "dexpilot.json"

# The public contract of the metrics: renaming a metric or a label must fail this test (and
# then the dashboard and the alert rules must be changed with it).
EXPECTED_METRICS: dict[str, tuple[str, ...]] = {
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


@pytest.fixture
def config(devnet: DevnetManifest, chain: RpcClient, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    devnet.write(tmp_path / "manifest.json")
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return load_config("test")


@pytest.fixture
def pushed_config(config: AppConfig, monitoring: MonitoringStack) -> AppConfig:
    metrics_cfg = config.metrics.model_copy(update={"pushgateway_url": monitoring.pushgateway_url})
    return config.model_copy(update={"metrics": metrics_cfg})


def _with_urls(config: AppConfig, urls: list[str]) -> AppConfig:
    return config.model_copy(update={"chain": config.chain.model_copy(update={"rpc_urls": urls})})


def _gap(chain: RpcClient, devnet: DevnetManifest, factor: float) -> None:
    sim = MarketSimulator(chain, devnet)
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = next(s for s in reader.snapshot(devnet.pool_refs()).pools
                if s.pool.venue == "sushiswap-v2" and s.pool.pair == "WETH/USDC")
    assert sim.push(snap, snap.price() * factor)


def _poll(condition: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(0.1)  # poll interval; the deadline, not the sleep, decides


# -- configuration checks ---------------------------------------------------------------------
def test_prometheus_config_rules_and_alertmanager_config_pass_their_checkers() -> None:
    commands = check_commands()
    assert any("test" in c and "rules" in c for c in commands)
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    rules_tests = (HERE / "tests" / "dexpilot.rules.test.yml").read_text()
    rules = (HERE / "rules" / "dexpilot.rules.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines()
              if line.strip().startswith("- alert:")]
    assert len(alerts) == 10
    untested = [a for a in alerts if f"alertname: {a}" not in rules_tests]
    assert untested == []


# -- metric names ------------------------------------------------------------------------------
def test_metric_names_and_labels_are_stable() -> None:
    assert METRICS == EXPECTED_METRICS
    metrics = Metrics()
    touched = {"step_seconds": 1, "cycles": 1, "signals": 1, "orders": 1, "rejections": 1,
               "pnl_today": 1, "wallet_value": 1, "swept": 1, "rpc_seconds": 1,
               "rpc_errors": 2, "venue_errors": 2, "bot_state": 1, "loss_limit": 1}
    for attribute, arity in touched.items():
        getattr(metrics, attribute).labels(*["x"] * arity)
    exported = metrics.exported()
    assert exported == {name: tuple(sorted(labels)) for name, labels in EXPECTED_METRICS.items()}
    assert all(name.startswith("dexpilot_") for name in exported)


def test_each_process_has_its_own_registry() -> None:
    from prometheus_client import REGISTRY

    a, b = Metrics(), Metrics()
    a.fills.inc()
    assert a.registry.get_sample_value("dexpilot_fills_total") == 1
    assert b.registry.get_sample_value("dexpilot_fills_total") == 0
    assert REGISTRY.get_sample_value("dexpilot_fills_total") is None


# -- the live alert path -----------------------------------------------------------------------
@pytest.mark.chain
def test_bot_in_error_alerts_through_alertmanager_and_resume_resolves_it(
    pushed_config: AppConfig, monitoring: MonitoringStack, webhook_receiver: WebhookReceiver,
    devnet: DevnetManifest,
) -> None:
    other = AnvilProcess.start(chain_id=999)
    config = _with_urls(pushed_config, [devnet.rpc_url])
    metrics = Metrics()
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    metrics.attach(rt)

    def halted(status: str) -> Any:
        return lambda a: (a["labels"].get("alertname") == "DexpilotBotHalted"
                          and a["labels"].get("environment") == "test" and a["status"] == status)

    try:
        observed_cycle(rt, metrics, "healthy")
        assert push_metrics(config, metrics=metrics)
        assert rt.state.state is BotState.RUNNING
        rt.client.urls[0] = other.url  # the only endpoint now serves another chain
        with pytest.raises(SystemFault, match="chain id changed"):
            observed_cycle(rt, metrics, "switched")
        assert rt.state.state.value == BotState.ERROR.value
        pushed_at = time.monotonic()
        assert push_metrics(config, metrics=metrics)

        firing = webhook_receiver.wait_for(halted("firing"), timeout=30)
        fired_s = time.monotonic() - pushed_at
        assert firing["labels"]["state"] == "ERROR"
        assert firing["labels"]["severity"] == "critical"
        assert webhook_receiver.alerts()  # it came through Alertmanager's webhook payload
        errors = monitoring.query('dexpilot_errors_total{environment="test",kind="system"}')
        assert errors and float(errors[0]["value"][1]) >= 1

        rt.state.resume("operator checked the endpoint", actor="test")
        assert push_metrics(config, metrics=metrics)
        resolved = webhook_receiver.wait_for(halted("resolved"), timeout=30)
        assert resolved["labels"]["state"] == "ERROR"
        assert fired_s < 30
    finally:
        rt.close()
        other.stop()


# -- the dashboard ----------------------------------------------------------------------------
def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    assert len(queries) >= 15
    return queries


def _concrete(expr: str) -> str:
    return expr.replace("$environment", "test").replace("$__rate_interval", "1m")


@pytest.mark.chain
def test_every_dashboard_query_runs_and_returns_data_after_a_demo_session(
    pushed_config: AppConfig, monitoring: MonitoringStack, devnet: DevnetManifest,
    chain: RpcClient,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = _with_urls(pushed_config, [devnet.rpc_url, dead])
    metrics = Metrics()
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    metrics.attach(rt)
    try:
        rt.client.switch()  # the first endpoint in use goes down: the next read fails over
        assert with_failover(rt.client, rt.client.chain_id) == devnet.chain_id
        _gap(chain, devnet, 1.02)
        traded = observed_cycle(rt, metrics, "demo-trade")
        assert traded.executions and all(e.filled for e in traded.executions)
        observed_cycle(rt, metrics, "demo-idle")
        _gap(chain, devnet, 1.10)  # a manipulated pool: refused by the risk checks
        refused = observed_cycle(rt, metrics, "demo-refused")
        assert refused.rejected
        # The analysis and backup flows report their own runs; stand in for them here.
        metrics.analysis_done()
        metrics.backup_done()
        assert push_metrics(config, metrics=metrics)
    finally:
        rt.close()
    assert metrics.exported() == {n: tuple(sorted(ls)) for n, ls in EXPECTED_METRICS.items()}

    # Every metric reached Prometheus through the Pushgateway.
    def scraped() -> set[str]:
        rows = monitoring.query('count by (__name__) ({__name__=~"dexpilot_.*",'
                                'environment="test"})')
        return {r["metric"]["__name__"] for r in rows}

    wanted = {n + ("_count" if n.endswith("_seconds") and "timestamp" not in n
                   and n != "dexpilot_cycle_interval_seconds" else "")
              for n in EXPECTED_METRICS}
    _poll(lambda: wanted <= scraped(), what=f"all metrics scraped (missing {wanted})")

    for title, expr in _dashboard_queries():
        concrete = _concrete(expr)
        result = _poll(lambda q=concrete: monitoring.query(q), what=f"{title}: {concrete}")
        assert result, (title, concrete)


def test_a_misspelt_dashboard_query_is_caught(monitoring: MonitoringStack) -> None:
    with pytest.raises(ValueError, match="parse error"):
        monitoring.query(_concrete('sum by (rule) (dexpilot_risk_rejections_total{environment='
                                   '"$environment"}'))


# -- structured logs --------------------------------------------------------------------------
@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("test"))
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@pytest.mark.chain
def test_a_live_cycle_logs_json_lines_with_trade_ids_and_never_the_key(
    config: AppConfig, devnet: DevnetManifest, chain: RpcClient, json_log: io.StringIO,
) -> None:
    # The key is deliberately NOT registered for masking: nothing may log it in the first place.
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        _gap(chain, devnet, 1.02)
        report = observed_cycle(rt, Metrics(), "logged")
    finally:
        rt.close()
    assert report.executions and all(e.filled for e in report.executions)
    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    assert KEY_HEX not in text.lower()
    trade = [entry for entry in lines if entry.get("order_id")]
    assert trade, "the executor logged no trade steps"
    for entry in trade:
        assert {"order_id", "tx_hash", "venue", "env", "time", "level"} <= entry.keys(), entry
        assert entry["env"] == "test"
    for result in report.executions:
        mined = [e for e in trade if e["order_id"] == result.client_order_id
                 and e["message"].endswith("order FILLED")]
        assert mined and mined[0]["tx_hash"] == result.tx_hash
        assert mined[0]["venue"] in {"uniswap-v2", "sushiswap-v2", "uniswap-v3"}


def test_registered_secrets_are_masked_in_every_field() -> None:
    buffer = io.StringIO()
    register_secret(ANVIL_KEY_1)
    handler = setup_logging("test", stream=buffer, logger="dexpilot.tests.masking")
    try:
        log = logging.getLogger("dexpilot.tests.masking")
        log.warning("key %s", ANVIL_KEY_1.upper(), extra={"detail": {"k": KEY_HEX}})
    finally:
        logging.getLogger("dexpilot.tests.masking").removeHandler(handler)
    line = buffer.getvalue()
    assert KEY_HEX not in line.lower() and "***" in line
    assert json.loads(line)["env"] == "test"
    assert mask("nothing secret") == "nothing secret"


def test_the_log_file_setting_sends_json_lines_to_the_file_not_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make run`` sets DEXPILOT_LOG_FILE: the CLI's stderr choice and a flow run's
    re-install both write to the file, masked, and nothing reaches the terminal."""
    path = tmp_path / "demo.log"
    monkeypatch.setenv("DEXPILOT_LOG_FILE", str(path))
    register_secret(ANVIL_KEY_1)
    name = "dexpilot.tests.logfile"
    # Only this logger's own handler is under test, not one an earlier test left on "dexpilot".
    monkeypatch.setattr(logging.getLogger(name), "propagate", False)
    setup_logging(stream="stderr", logger=name)
    handler = setup_logging("dev", logger=name)  # the flow-run hook, after the CLI's call
    try:
        logging.getLogger(name).warning("signed with %s", ANVIL_KEY_1)
    finally:
        logging.getLogger(name).removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["env"] == "dev"
    assert KEY_HEX not in lines[0].lower() and "***" in lines[0]
    assert "signed with" not in capsys.readouterr().err


# -- the errors view ---------------------------------------------------------------------------
def test_errors_view_counts_by_kind_over_time_and_the_metric_matches(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'errors.db'}")
    ledger.upgrade()
    try:
        ledger.record_error("test", ErrorKind.SYSTEM, "trading_cycle", "chain id changed")
        ledger.record_error("test", ErrorKind.NETWORK, "snapshot", "timed out")
        ledger.record_error("test", ErrorKind.NETWORK, "snapshot", "timed out")
        ledger.record_error("prod", ErrorKind.API, "route", "venue refused")
        counts = error_counts(ledger, "test")
        assert counts == {"system": {"trading_cycle": 1}, "network": {"snapshot": 2}}
        assert error_counts(ledger, "test", since=datetime.now(UTC) + timedelta(hours=1)) == {}
        timeline = error_timeline(ledger, "test", bucket_s=3600)
        assert sorted((kind, n) for _, kind, n in timeline) == [("network", 2), ("system", 1)]
        assert all(at.minute == 0 and at.tzinfo is not None for at, _, _ in timeline)
        metrics = Metrics()
        metrics.observe_ledger_errors(ledger, "test")
        sample = metrics.registry.get_sample_value
        assert sample("dexpilot_errors_total", {"kind": "network"}) == 2
        assert sample("dexpilot_errors_total", {"kind": "system"}) == 1
        assert sample("dexpilot_errors_total", {"kind": "api"}) == 0
    finally:
        ledger.dispose()


# -- Prefect's notification path ---------------------------------------------------------------
@pytest.mark.prefect
def test_failure_notification_block_and_automation_are_created(
    prefect_server: Any, webhook_receiver: WebhookReceiver,
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from deployments.monitoring.notifications import (
        AUTOMATION_NAME,
        BLOCK_NAME,
        ensure_failure_notifications,
    )

    first = ensure_failure_notifications(webhook_receiver.url)
    second = ensure_failure_notifications(webhook_receiver.url)  # idempotent
    with get_client(sync_client=True) as client:
        automations = client.read_automations_by_name(AUTOMATION_NAME)
    assert [a.id for a in automations] == [second.automation_id]
    automation = automations[0]
    assert automation.enabled
    assert "prefect.flow-run.Failed" in automation.trigger.expect  # type: ignore[union-attr]
    assert [a.type for a in automation.actions] == ["send-notification"]
    assert automation.actions[0].block_document_id == first.block_document_id  # type: ignore[union-attr]
    block = CustomWebhookNotificationBlock.load(BLOCK_NAME)
    assert block.url == webhook_receiver.url  # type: ignore[union-attr]
