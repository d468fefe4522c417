"""The bot state machine: the diagram's arrows (and nothing else) on a real SQLite ledger,
persistence across restarts, the `dexpilot state` commands and the `control` flow.

The `test` environment is pointed at files of each test (a manifest written here, a ledger in
tmp_path) through DEXPILOT_MANIFEST and DEXPILOT_LEDGER_URL; no dev chain is needed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

import dexpilot.control as control
import dexpilot_cli.state as state_cli
from dexpilot.errors import ConfigError
from dexpilot.ledger import Ledger
from dexpilot.state import (
    ALLOWED,
    BotState,
    BotStateMachine,
    LedgerTransitionStore,
    Transition,
    TransitionRefused,
)
from dexpilot_cli.main import app
from tests.fixtures.prefect import PrefectServer

S = BotState
# The diagram of DESIGN.md, written out independently of dexpilot.state.ALLOWED.
DIAGRAM = {
    (S.INIT, S.RUNNING),
    (S.RUNNING, S.TRADING), (S.TRADING, S.RUNNING),
    (S.RUNNING, S.PAUSED), (S.PAUSED, S.RUNNING),
    (S.RUNNING, S.ERROR), (S.ERROR, S.RUNNING), (S.ERROR, S.STOPPED),
    (S.RUNNING, S.STOPPED),
}
PAIRS = list(itertools.product(BotState, BotState))
# anvil's account #1: a public test key (the dev chain's wallet A).
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ANVIL_ADDR_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ENV = "test"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger migrated once; tests copy it (an Alembic run per test would be slow)."""
    path = tmp_path_factory.mktemp("ledger-template") / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    ledger.upgrade()
    ledger.dispose()
    return path


@pytest.fixture
def ledger_url(migrated_db: Path, tmp_path: Path) -> str:
    path = tmp_path / "ledger.db"
    shutil.copy(migrated_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    led = Ledger(ledger_url)
    yield led
    led.dispose()


def machine_on(ledger: Ledger, env: str = ENV) -> BotStateMachine:
    return BotStateMachine(LedgerTransitionStore(ledger), env)


def _addr() -> str:
    return str(Account.create().address)


def write_manifest(path: Path) -> Path:
    """A dev chain manifest with made-up addresses: the state commands never touch the chain."""
    tokens = [{"symbol": s, "address": _addr(), "decimals": d}
              for s, d in (("WETH", 18), ("USDC", 6), ("WBTC", 8), ("UNI", 18))]
    venues = [{"name": "uniswap-v2", "kind": "uniswap_v2", "factory": _addr(),
               "router": _addr()}]
    pools = [{"venue": "uniswap-v2", "kind": "v2", "address": _addr(), "token0": "USDC",
              "token1": "WETH", "fee_ppm": 3000}]
    path.write_text(json.dumps({
        "chain_id": 31337, "rpc_url": "http://127.0.0.1:1", "fingerprint": "test-state",
        "multicall": _addr(), "weth": "WETH", "tokens": tokens, "venues": venues,
        "pools": pools, "hot_wallet": ANVIL_ADDR_1, "cold_wallet": _addr(),
        "deployer": _addr(), "noise_traders": [],
    }))
    return path


@pytest.fixture
def test_env(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the `test` environment at a manifest and a ledger of this test; its ledger URL."""
    for name in list(os.environ):
        if name.startswith("DEXPILOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(write_manifest(tmp_path / "manifest.json")))
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", ledger_url)
    monkeypatch.setenv("DEXPILOT_HOT_WALLET_KEY", ANVIL_KEY_1)
    return ledger_url


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["state", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the operator would have seen
    return result.exit_code, result.stdout, result.stderr


@contextlib.contextmanager
def no_prefect_server() -> Iterator[None]:
    """No Prefect API configured, as for an operator without a server (dev)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def current(url: str, env: str = ENV) -> BotState:
    led = Ledger(url)
    try:
        return machine_on(led, env).state
    finally:
        led.dispose()


# -- the diagram ----------------------------------------------------------------------------------
def test_allowed_is_exactly_the_design_diagram() -> None:
    assert set(ALLOWED) == DIAGRAM
    assert len(PAIRS) == 36


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_of_states(ledger: Ledger, source: BotState, target: BotState) -> None:
    if source is not S.INIT:  # put the bot in `source` (setup rows bypass the rule on purpose)
        ledger.record_transition(ENV, S.INIT, source, reason="setup", actor="test")
    machine = machine_on(ledger)
    assert machine.state is source
    before = len(ledger.transitions(ENV))
    if (source, target) in DIAGRAM:
        assert machine.can(target)
        done = machine.transition(target, reason="arrow", actor="test:pairs")
        assert (done.from_state, done.to_state) == (source, target)
        assert machine.state is target
        rows = ledger.transitions(ENV)
        assert len(rows) == before + 1
        assert (rows[-1].from_state, rows[-1].to_state) == (source.value, target.value)
    else:
        assert not machine.can(target)
        with pytest.raises(TransitionRefused) as info:
            machine.transition(target, reason="no arrow", actor="test:pairs")
        allowed = sorted(t.value for f, t in DIAGRAM if f is source) or ["nowhere"]
        message = str(info.value)
        assert f"{source.value} -> {target.value} is not allowed" in message
        assert ", ".join(allowed) in message
        assert machine.state is source and len(ledger.transitions(ENV)) == before


def test_a_change_needs_a_reason(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="reason"):
        machine_on(ledger).transition(S.RUNNING, reason="  ", actor="test")
    assert ledger.transitions(ENV) == []


def test_paused_or_stopped_bot_does_not_trade(ledger: Ledger) -> None:
    machine = machine_on(ledger)
    assert not machine.may_trade()  # INIT
    machine.start()
    assert machine.may_trade()
    machine.pause("maintenance", actor="test")
    assert not machine.may_trade()
    with pytest.raises(TransitionRefused):
        machine.begin_trading()
    machine.resume("done", actor="test")
    machine.stop("shutdown", actor="test")
    assert not machine.may_trade()
    with pytest.raises(TransitionRefused):
        machine.begin_trading()
    assert machine.state is S.STOPPED


# -- persistence ----------------------------------------------------------------------------------
def test_transitions_persist_in_order_and_survive_a_restart(ledger_url: str) -> None:
    t0 = datetime.now(UTC)
    led = Ledger(ledger_url)
    machine = machine_on(led)
    machine.start(actor="bot")
    machine.begin_trading("cycle 1")
    machine.end_trading("cycle 1 done")
    machine.pause("maintenance window", actor="cli:alice")
    machine.resume("maintenance over", actor="prefect:brave-fox")
    machine.fault("ledger and chain disagree")
    machine.resume("checked by hand", actor="cli:alice")
    machine.stop("end of day", actor="cli:bob")
    led.dispose()
    t1 = datetime.now(UTC)

    restarted = Ledger(ledger_url)  # a new process would see exactly this
    try:
        rows = restarted.transitions(ENV)
        expected = [
            ("INIT", "RUNNING", "first start", "bot"),
            ("RUNNING", "TRADING", "cycle 1", "bot"),
            ("TRADING", "RUNNING", "cycle 1 done", "bot"),
            ("RUNNING", "PAUSED", "maintenance window", "cli:alice"),
            ("PAUSED", "RUNNING", "maintenance over", "prefect:brave-fox"),
            ("RUNNING", "ERROR", "ledger and chain disagree", "bot"),
            ("ERROR", "RUNNING", "checked by hand", "cli:alice"),
            ("RUNNING", "STOPPED", "end of day", "cli:bob"),
        ]
        assert [(r.from_state, r.to_state, r.reason, r.actor) for r in rows] == expected
        times = [r.created_at for r in rows]
        assert all(t.tzinfo is not None for t in times)
        assert times == sorted(times) and t0 <= times[0] and times[-1] <= t1
        again = machine_on(restarted)
        assert again.state is S.STOPPED
        with pytest.raises(TransitionRefused, match="STOPPED -> RUNNING is not allowed"):
            again.resume("try", actor="test")
        assert machine_on(restarted, "dev").state is S.INIT  # environments are separate
    finally:
        restarted.dispose()


def test_fault_while_trading_takes_both_arrows(ledger: Ledger) -> None:
    machine = machine_on(ledger)
    machine.start()
    machine.begin_trading()
    machine.fault("gas balance too low")
    assert [(r.from_state, r.to_state) for r in ledger.transitions(ENV)][-2:] == [
        ("TRADING", "RUNNING"), ("RUNNING", "ERROR")]


# -- the CLI --------------------------------------------------------------------------------------
def test_cli_round_trip(test_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_cli, "cli_actor", lambda: "cli:tester")
    code, out, _ = cli("show", "--env", ENV)
    assert code == 0 and "bot is INIT" in out and "never started" in out

    led = Ledger(test_env)
    machine_on(led).start()  # the bot starts; operators never do INIT -> RUNNING
    led.dispose()

    code, out, err = cli("pause", "--env", ENV, "--reason", "maintenance")
    assert code == 0, err
    assert "RUNNING -> PAUSED" in out and "cli:tester" in out
    assert current(test_env) is S.PAUSED

    code, out, _ = cli("show", "--env", ENV)
    assert code == 0 and "bot is PAUSED" in out
    for text in ("time", "from", "to", "reason", "actor", "maintenance", "cli:tester",
                 "first start", "UTC"):
        assert text in out

    code, out, err = cli("resume", "--env", ENV, "--reason", "all clear")
    assert code == 0, err
    assert "PAUSED -> RUNNING" in out and current(test_env) is S.RUNNING

    code, out, err = cli("stop", "--env", ENV, "--reason", "end of day")
    assert code == 0, err
    assert "RUNNING -> STOPPED" in out and current(test_env) is S.STOPPED

    code, out, err = cli("resume", "--env", ENV, "--reason", "again")
    assert code == 1 and out == ""
    assert "STOPPED -> RUNNING is not allowed" in err and "nowhere" in err
    assert "Traceback" not in err

    led = Ledger(test_env)
    rows = led.transitions(ENV)
    led.dispose()
    assert [(r.from_state, r.to_state, r.reason, r.actor) for r in rows] == [
        ("INIT", "RUNNING", "first start", "bot"),
        ("RUNNING", "PAUSED", "maintenance", "cli:tester"),
        ("PAUSED", "RUNNING", "all clear", "cli:tester"),
        ("RUNNING", "STOPPED", "end of day", "cli:tester"),
    ]
    code, out, _ = cli("show", "--env", ENV, "--last", "2")
    assert code == 0 and "last 2 transition" in out and "first start" not in out


def test_cli_actor_is_the_os_user(test_env: str) -> None:
    led = Ledger(test_env)
    machine_on(led).start()
    code, _, err = cli("pause", "--env", ENV, "--reason", "look")
    assert code == 0, err
    actor = led.transitions(ENV)[-1].actor
    led.dispose()
    assert actor == state_cli.cli_actor() and actor.startswith("cli:") and len(actor) > 4


def test_cli_refused_transition_lists_allowed_targets(test_env: str) -> None:
    led = Ledger(test_env)
    machine_on(led).start()
    led.dispose()
    code, out, err = cli("resume", "--env", ENV, "--reason", "x")  # already running
    assert code == 1 and out == ""
    assert "RUNNING -> RUNNING is not allowed" in err and "may go to ERROR, PAUSED" in err
    assert current(test_env) is S.RUNNING


# Where pause and stop go from each state that is not TRADING, along the diagram's arrows.
ROUTES = {
    ("pause", S.INIT): [S.RUNNING, S.PAUSED], ("pause", S.RUNNING): [S.PAUSED],
    ("pause", S.ERROR): [S.RUNNING, S.PAUSED], ("pause", S.PAUSED): [],
    ("pause", S.STOPPED): [],
    ("stop", S.INIT): [S.RUNNING, S.STOPPED], ("stop", S.RUNNING): [S.STOPPED],
    ("stop", S.ERROR): [S.STOPPED], ("stop", S.PAUSED): [S.RUNNING, S.STOPPED],
    ("stop", S.STOPPED): [],
}


def _put_in(machine: BotStateMachine, state: BotState) -> None:
    if state is S.INIT:
        return
    machine.start()
    if state is S.ERROR:
        machine.fault("rpc chain id changed")
    elif state is not S.RUNNING:
        machine.transition(state, reason="setup", actor="test")


@pytest.mark.parametrize(("action", "source"), list(ROUTES), ids=[f"{a}-{s}" for a, s in ROUTES])
def test_cli_pause_and_stop_reach_a_safe_state_from_any_state(
        test_env: str, action: str, source: BotState) -> None:
    led = Ledger(test_env)
    _put_in(machine_on(led), source)
    before = len(led.transitions(ENV))
    led.dispose()
    code, out, err = cli(action, "--env", ENV, "--reason", "safety first")
    assert code == 0, err
    led = Ledger(test_env)
    added = led.transitions(ENV)[before:]
    led.dispose()
    route = ROUTES[(action, source)]
    assert [BotState(r.to_state) for r in added] == route
    assert all((r.reason, r.actor) == ("safety first", state_cli.cli_actor()) for r in added)
    assert current(test_env) in (S.PAUSED, S.STOPPED)
    if not route:
        assert f"already {source.value}; nothing changed" in out


def test_cli_never_starts_a_bot_in_init_on_resume(test_env: str) -> None:
    code, out, err = cli("resume", "--env", ENV, "--reason", "x")
    assert code == 1 and out == ""
    assert "the bot has never started" in err, err
    led = Ledger(test_env)
    assert led.transitions(ENV) == []
    led.dispose()


def test_cli_reason_is_required(test_env: str) -> None:
    led = Ledger(test_env)
    machine_on(led).start()
    led.dispose()
    code, _, err = cli("pause", "--env", ENV, "--reason", "   ")
    assert code == 1 and "a reason is required to pause" in err
    code, _, err = cli("stop", "--env", ENV)  # no --reason at all: a usage error
    assert code == 2 and "--reason" in err
    assert current(test_env) is S.RUNNING


def test_cli_unknown_environment(test_env: str) -> None:
    code, out, err = cli("show", "--env", "staging")
    assert code == 1 and out == "" and "unknown environment 'staging'" in err
    assert "Traceback" not in err


def test_cli_show_on_an_empty_database(test_env: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", f"sqlite:///{tmp_path / 'fresh' / 'ledger.db'}")
    code, out, _ = cli("show", "--env", ENV)
    assert code == 0 and "bot is INIT" in out


def test_cli_resume_does_not_end_a_trading_cycle(test_env: str) -> None:
    led = Ledger(test_env)
    machine = machine_on(led)
    machine.start()
    machine.begin_trading()
    led.dispose()
    code, _, err = cli("resume", "--env", ENV, "--reason", "x")
    assert code == 1 and "resume applies to a PAUSED or ERROR bot" in err
    assert current(test_env) is S.TRADING


def test_cli_resume_from_error(test_env: str) -> None:
    led = Ledger(test_env)
    machine = machine_on(led)
    machine.start()
    machine.fault("rpc chain id changed")
    led.dispose()
    code, out, err = cli("resume", "--env", ENV, "--reason", "rpc fixed")
    assert code == 0, err
    assert "ERROR -> RUNNING" in out and current(test_env) is S.RUNNING


def test_cli_pause_waits_for_the_trading_cycle(test_env: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    led = Ledger(test_env)
    machine_on(led).start()
    machine_on(led).begin_trading("cycle 7")
    led.dispose()

    polled = threading.Event()  # set once the CLI has seen TRADING and starts to wait
    real_sleep = control._poll_sleep

    def poll_sleep(seconds: float) -> None:
        polled.set()
        real_sleep(seconds)

    monkeypatch.setattr(control, "_poll_sleep", poll_sleep)
    problems: list[BaseException] = []

    def bot() -> None:  # the other side: the bot ends its cycle while the CLI waits
        try:
            assert polled.wait(30), "the CLI never waited"
            bot_ledger = Ledger(test_env)
            machine_on(bot_ledger).end_trading("cycle 7 done")
            bot_ledger.dispose()
        except BaseException as exc:  # reported below, not lost in the thread
            problems.append(exc)

    thread = threading.Thread(target=bot)
    thread.start()
    # This "bot" trades without wallet A's lock, which a real one never does: so no Prefect
    # server to ask for the lock here (an earlier test may have started one), only the state.
    with no_prefect_server():
        code, out, err = cli("pause", "--env", ENV, "--reason", "maintenance", "--wait", "30")
    thread.join(30)
    assert not problems and not thread.is_alive()
    assert code == 0, err
    assert "waiting up to 30 s" in out and "RUNNING -> PAUSED" in out
    led = Ledger(test_env)
    rows = led.transitions(ENV)
    led.dispose()
    assert [(r.from_state, r.to_state, r.actor) for r in rows][-2:] == [
        ("TRADING", "RUNNING", "bot"), ("RUNNING", "PAUSED", state_cli.cli_actor())]


def test_stop_without_a_lock_to_ask_gives_up_when_the_cycle_does_not_end(
        ledger: Ledger) -> None:
    machine = machine_on(ledger)
    machine.start()
    machine.begin_trading()
    with pytest.raises(control.ControlTimeout) as raised:
        control.apply_action(machine, "stop", reason="shutdown", actor="test", wait_s=0.3,
                             poll_s=0.05)
    assert "still TRADING after waiting 0.3 s" in str(raised.value)
    assert "was not stopped" in str(raised.value)
    assert "the next trading session recovers the state" in str(raised.value)
    assert machine.state is S.TRADING


@pytest.mark.prefect
def test_cli_stop_of_a_trading_bot_waits_for_a_live_holder_and_recovers_a_dead_one(
        prefect_server: PrefectServer, test_env: str) -> None:
    """TRADING with wallet A's lock held is a live trade: stop gives up. TRADING with the lock
    free was left by a dead trader: stop recovers it (as `recovery`) and then stops."""
    from tasks.locks import wallet_lock

    led = Ledger(test_env)
    machine_on(led).start()
    machine_on(led).begin_trading("cycle 9")
    led.dispose()
    holding, release = threading.Event(), threading.Event()

    def live_trader() -> None:
        with wallet_lock(ANVIL_ADDR_1, timeout_s=30):
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=live_trader)
    thread.start()
    try:
        assert holding.wait(30), "the live trader never got the wallet lock"
        code, out, err = cli("stop", "--env", ENV, "--reason", "shutdown", "--wait", "1")
        assert code == 1, out
        assert "a live process held wallet A's lock" in err and "was not stopped" in err
        assert current(test_env) is S.TRADING
    finally:
        release.set()
        thread.join(30)
    # The trader is gone (its lock let go) but its TRADING is still there: a dead trader.
    assert current(test_env) is S.TRADING
    code, out, err = cli("stop", "--env", ENV, "--reason", "shutdown", "--wait", "30")
    assert code == 0, err
    assert "TRADING -> RUNNING" in out and "recovered by recovery" in out
    assert "RUNNING -> STOPPED" in out
    led = Ledger(test_env)
    rows = led.transitions(ENV)
    led.dispose()
    recovery, stop = rows[-2:]
    assert (recovery.from_state, recovery.to_state, recovery.actor) == (
        "TRADING", "RUNNING", "recovery")
    assert "asked to stop the bot (shutdown)" in recovery.reason
    assert (stop.from_state, stop.to_state, stop.reason, stop.actor) == (
        "RUNNING", "STOPPED", "shutdown", state_cli.cli_actor())


@pytest.mark.prefect
def test_cli_stop_of_a_paused_bot_passes_through_running_only_under_the_wallet_lock(
        prefect_server: PrefectServer, test_env: str) -> None:
    """PAUSED -> RUNNING -> STOPPED: while a cycle holds the wallet it could start trading
    between the two steps, so the CLI waits for the lock and changes nothing without it."""
    from tasks.locks import wallet_lock

    led = Ledger(test_env)
    machine_on(led).start()
    machine_on(led).pause("maintenance", actor="test")
    led.dispose()
    with wallet_lock(ANVIL_ADDR_1, timeout_s=30):
        code, _, err = cli("stop", "--env", ENV, "--reason", "shutdown", "--wait", "1")
    assert code == 1 and "the bot is PAUSED and a live process held wallet A's lock" in err
    assert current(test_env) is S.PAUSED
    code, out, err = cli("stop", "--env", ENV, "--reason", "shutdown", "--wait", "30")
    assert code == 0, err
    assert "PAUSED -> RUNNING" in out and "RUNNING -> STOPPED" in out
    assert current(test_env) is S.STOPPED


def test_apply_action_rejects_unknown_action(ledger: Ledger) -> None:
    with pytest.raises(ConfigError, match="unknown action"):
        control.apply_action(machine_on(ledger), "start", reason="x",  # type: ignore[arg-type]
                               actor="test")


# -- the control flow -----------------------------------------------------------------------------
def test_control_flow_parameters_form_is_typed() -> None:
    from flows.control import control

    props = control.parameters.model_dump()["properties"]
    assert props["action"]["enum"] == ["pause", "resume", "stop", "show"]
    assert props["action"]["default"] == "show" and props["env"]["default"] == "dev"
    assert props["reason"]["type"] == "string"


@pytest.mark.prefect
def test_control_flow_pauses_and_resumes(prefect_server: PrefectServer, test_env: str) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.control import control
    from settings.blocks import push_settings

    push_settings(ENV, rpc=False)  # the manifest's RPC URL is made up: no chain here
    led = Ledger(test_env)
    machine_on(led).start()
    led.dispose()

    assert control(env=ENV, action="pause", reason="maintenance from the UI") == "PAUSED"
    assert current(test_env) is S.PAUSED
    assert control(env=ENV) == "PAUSED"  # show
    assert control(env=ENV, action="resume", reason="back") == "RUNNING"
    with pytest.raises(ConfigError, match="a reason is required to stop"):
        control(env=ENV, action="stop", reason="")
    assert current(test_env) is S.RUNNING

    led = Ledger(test_env)
    rows = led.transitions(ENV)
    led.dispose()
    assert [(r.from_state, r.to_state, r.reason) for r in rows][1:] == [
        ("RUNNING", "PAUSED", "maintenance from the UI"), ("PAUSED", "RUNNING", "back")]
    assert all(r.actor.startswith("prefect:") and len(r.actor) > len("prefect:")
               for r in rows[1:])

    async def artifact() -> str:
        async with get_client() as client:
            found = [a for a in await client.read_latest_artifacts()
                     if a.key == f"bot-state-{ENV}"]
            assert found, "bot-state artifact missing"
            return str(found[0].data)

    markdown = asyncio.run(artifact())
    assert "**RUNNING**" in markdown and "maintenance from the UI" in markdown
    assert "| PAUSED | RUNNING | back |" in markdown


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                          marks=pytest.mark.postgres)])
def test_a_stale_transition_is_refused_not_lost(backend: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """Two writers read RUNNING at once; the second to write must not overwrite the first."""
    url = (f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite"
           else request.getfixturevalue("fresh_postgres_url"))
    ledger = Ledger(url)
    ledger.upgrade()
    store = LedgerTransitionStore(ledger)
    machine = BotStateMachine(store, "test")
    machine.start()
    now = datetime.now(UTC)
    store.append_transition(Transition("test", BotState.RUNNING, BotState.TRADING, "cycle",
                                       "bot", now))
    with pytest.raises(TransitionRefused, match="changed to TRADING meanwhile"):
        store.append_transition(Transition("test", BotState.RUNNING, BotState.PAUSED,
                                           "operator pause", "cli:op", now))
    assert machine.state is BotState.TRADING
    assert [t.to_state for t in ledger.transitions("test")] == ["RUNNING", "TRADING"]
    ledger.dispose()
