"""The JSON log with secret masking in every entry point, checked where it matters: a real
worker-run trading session's output and the Prefect API's stored logs of that run hold
dexpilot's own lines (so the scan has something to find) and never the hot-wallet key."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.logs import MaskSecrets, register_secret
from tests.fixtures.chain import ANVIL_KEY_1
from tests.fixtures.ops import OpsServer, wait_for
from tests.test_trading_cycle import _push

KEY_HEX = ANVIL_KEY_1.removeprefix("0x").lower()
POOL = "dexpilot-test"
WORKER = "logs-worker"
PUSH_SETTINGS = "from settings.blocks import push_settings; push_settings('test')"


def test_a_flow_run_masks_the_key_for_every_handler_the_core_reaches() -> None:
    """The hook's setup masks the record itself, so Prefect's handlers (which format records
    their own way) never see the key either; and it sends the core's lines to the API."""
    from prefect.logging.handlers import APILogHandler

    from tasks.run_logging import install_run_logging

    core = logging.getLogger("dexpilot")
    seen = io.StringIO()
    foreign = logging.StreamHandler(seen)  # stands in for any handler Prefect attached
    core.addHandler(foreign)
    saved_level = core.level
    try:
        register_secret(ANVIL_KEY_1)
        install_run_logging("test")
        assert any(isinstance(h, APILogHandler) for h in core.handlers)
        for handler in [*core.handlers, *logging.getLogger().handlers]:
            assert any(isinstance(f, MaskSecrets) for f in handler.filters), handler
        logging.getLogger("dexpilot.tests.worker_logs").info(
            "signed with %s", KEY_HEX, extra={"raw": ANVIL_KEY_1})
        assert seen.getvalue().strip() == "signed with ***"
    finally:
        core.removeHandler(foreign)
        for handler in [h for h in core.handlers if isinstance(h, APILogHandler)]:
            core.removeHandler(handler)
        core.setLevel(saved_level)


def test_the_cli_logs_json_on_stderr_with_the_key_masked(tmp_path: Path) -> None:
    """The ``dexpilot`` command installs the setup itself (a fresh process, as run)."""
    script = (
        "import logging, sys\n"
        "from dexpilot.logs import register_secret\n"
        "from dexpilot_cli.main import app\n"
        f"register_secret({ANVIL_KEY_1!r})\n"
        "@app.command(name='say')\n"
        "def say() -> None:\n"
        f"    logging.getLogger('dexpilot.cli').info('key is %s', {KEY_HEX!r})\n"
        "app(['say'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert '"logger": "dexpilot.cli", "message": "key is ***"' in done.stderr, done.stderr
    assert KEY_HEX not in done.stderr.lower()


def _stored_logs(server: OpsServer, run_id: str) -> list[Any]:
    """The run's logs as the Prefect client reads them (``read_logs``)."""
    import prefect.settings as ps
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs: list[Any] = []
    with ps.temporary_settings(updates={ps.PREFECT_API_URL: server.api_url,
                                        ps.PREFECT_API_AUTH_STRING: server.auth_string}), \
            get_client(sync_client=True) as client:
        while True:  # every page: a session's run holds hundreds of lines
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200, offset=len(logs))
            logs += page
            if len(page) < 200:
                return logs


@pytest.mark.prefect
@pytest.mark.chain
def test_a_worker_run_session_logs_dexpilot_lines_and_never_the_key(
        deployed: OpsServer, devnet: DevnetManifest, chain: RpcClient, tmp_path: Path) -> None:
    devnet.write(tmp_path / "manifest.json")
    extra = {
        "DEXPILOT_MANIFEST": str(tmp_path / "manifest.json"),
        "DEXPILOT_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "DEXPILOT_HOT_WALLET_KEY": ANVIL_KEY_1, "DEXPILOT_PUSHGATEWAY_URL": ""}
    pushed = subprocess.run([sys.executable, "-c", PUSH_SETTINGS], cwd=PROJECT_ROOT,
                            env=deployed.env(**extra), capture_output=True, text=True,
                            timeout=120, check=False)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)  # a gap between venues: it trades

    def core_lines(run_id: str) -> list[Any] | None:
        logs = _stored_logs(deployed, run_id)
        mine = [log for log in logs if log.name.startswith("dexpilot")]
        return logs if any(log.message.endswith(": swap sent") for log in mine) else None

    try:
        deployed.start_worker(POOL, WORKER, **extra)
        run_id = deployed.run_deployment("trading-session/test",
                                         {"env": "test", "max_cycles": 2, "interval_s": 0.2})
        run = deployed.wait_final(run_id, 180)
        assert (run.get("state") or {}).get("type") == "COMPLETED", (
            run["state"], deployed.worker_log(WORKER)[-3000:])
        # The run's process sends its logs in batches, the last as it exits after the run's
        # final state: the worker (and so that process) must live until they are stored.
        stored = wait_for(lambda: core_lines(run_id), 60,
                          "dexpilot's lines in the run's stored logs", 0.5)
    finally:
        deployed.stop_workers()
    output = deployed.worker_log(WORKER)

    # The worker's output carries the flow run's JSON lines from the core ...
    assert '"logger": "dexpilot.execution.executor"' in output, output[-3000:]
    assert ': swap sent"' in output and ': order written"' in output, output[-3000:]
    # ... and neither it nor Prefect's stored logs of the run hold the key.
    texts = [output] + [f"{log.name} {log.message}" for log in stored]
    leaks = [t[:200] for t in texts if KEY_HEX in t.lower()]
    assert leaks == [], leaks
