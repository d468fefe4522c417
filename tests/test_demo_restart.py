"""`make run`, `dexpilot devnet down`, `make run`: both runs trade.

The second run's dev chain starts from the cached state again, so it knows none of the first
run's transactions; before dev chains had an instance id the kept `.devnet/ledger.db` then
crashed the run (a nonce "already used") and left the bot in ERROR for every later run. Here the
real `dexpilot demo` (what `make run` calls) runs in a subprocess with its own `.devnet`
directory (``DEXPILOT_DEVNET_DIR``) and Prefect home, as `make run` sets them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlmodel import func, select

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.ledger import FillRow, Ledger
from dexpilot.state import BotStateMachine, LedgerTransitionStore
from tests.fixtures.chain import ANVIL_KEY_1

DEXPILOT = str(PROJECT_ROOT / ".venv" / "bin" / "dexpilot")


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEXPILOT_", "PREFECT_"))}
    env.update({
        "DEXPILOT_DEVNET_DIR": str(tmp_path / "devnet"),
        "DEXPILOT_LOG_FILE": str(tmp_path / "demo.log"),
        "DEXPILOT_HOT_WALLET_KEY": ANVIL_KEY_1,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "COLUMNS": "120",
    })
    return env


def _dexpilot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DEXPILOT, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=240, check=False)


def _fills(ledger_file: Path) -> int:
    ledger = Ledger(f"sqlite:///{ledger_file}")
    try:
        with ledger.session(write=False) as session:
            return int(session.exec(select(func.count()).select_from(FillRow)).one())
    finally:
        ledger.dispose()


def _devnet_dir(tmp_path: Path) -> Path:
    devnet = tmp_path / "devnet"
    devnet.mkdir()
    # Share the deployed-market cache with the rest of the suite so nothing is redeployed.
    shared_cache = PROJECT_ROOT / ".devnet" / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    (devnet / "cache").symlink_to(shared_cache)
    return devnet


@pytest.mark.chain
@pytest.mark.prefect
def test_make_run_devnet_down_make_run_trades_both_times(tmp_path: Path) -> None:
    devnet = _devnet_dir(tmp_path)
    env = _environment(tmp_path)
    demo = ("demo", "--cycles", "6", "--interval", "0.5")
    try:
        first = _dexpilot(env, *demo)
        output = first.stdout + first.stderr
        assert first.returncode == 0, output
        assert "Traceback" not in output
        first_fills = _fills(devnet / "ledger.db")
        assert first_fills > 0, output

        down = _dexpilot(env, "devnet", "down")
        assert down.returncode == 0 and "dev chain stopped" in down.stdout, down.stdout

        second = _dexpilot(env, *demo)
        output = second.stdout + second.stderr
        assert second.returncode == 0, output
        assert "Traceback" not in output and "final state: RUNNING" in output, output
        (archived,) = devnet.glob("ledger-*.db")
        assert f"archived as {archived}" in output
        assert _fills(archived) == first_fills  # the first run's ledger, kept as it was
        assert _fills(devnet / "ledger.db") > 0, output
    finally:
        _dexpilot(env, "devnet", "down")


@pytest.mark.chain
def test_a_bot_in_error_ends_the_demo_in_one_paragraph_naming_the_next_command(
        tmp_path: Path) -> None:
    devnet = _devnet_dir(tmp_path)
    env = _environment(tmp_path)
    try:
        up = _dexpilot(env, "devnet", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        ledger = Ledger(f"sqlite:///{devnet / 'ledger.db'}")
        try:
            machine = BotStateMachine(LedgerTransitionStore(ledger), "dev")
            machine.start()
            machine.fault("gas balance too low")
        finally:
            ledger.dispose()

        demo = _dexpilot(env, "demo", "--cycles", "1")
        output = demo.stdout + demo.stderr
        assert demo.returncode == 1, output
        assert "Traceback" not in output
        assert "The bot is ERROR (gas balance too low)" in output
        assert "dexpilot state resume --env dev" in output and "dexpilot devnet down" in output
    finally:
        _dexpilot(env, "devnet", "down")
