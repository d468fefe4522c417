"""Two process workers on one pool: two trading cycles for the same wallet serialise on the
per-wallet global concurrency limit, while a read-only market snapshot runs beside them.

Everything is real: the session's `prefect server start` (ops server), the `trading-cycle/test`
and `market-snapshot/test` deployments of prefect.yaml, two `prefect worker start` processes on
`dexpilot-test`, the dev chain. A helper process first holds wallet A's slot (the same
``tasks.locks.wallet_lock`` the cycles take), so the cycles must visibly wait for it; once it
lets go, the Prefect API's own records (flow run labels and times, task run times, the limit's
slots) must show the cycles ran one after the other and the snapshot ran while they waited.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from tasks.locks import wallet_limit_name
from tests.fixtures.ops import OpsServer, stop_process, wait_for

ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
POOL = "dexpilot-test"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

# Pushes the `test` settings (this chain, a fresh ledger), then holds wallet A's slot until a
# line arrives on stdin. "held" is written to a file once the slot is taken.
HOLDER = """
import sys
from pathlib import Path

from settings.blocks import push_settings
from tasks.locks import wallet_lock

config = push_settings("test").block.config
with wallet_lock(config.wallets.hot, timeout_s=60):
    Path(sys.argv[1]).write_text(config.wallets.hot)
    sys.stdin.readline()
print("released", flush=True)
"""


def _time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _task_runs(server: OpsServer, run_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = server.api("POST", "/task_runs/filter", json={
        "task_runs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
    return runs


def _state(run: dict[str, Any]) -> str:
    return str((run.get("state") or {}).get("type"))


def _worker_of(server: OpsServer, run_id: str) -> str | None:
    labels = server.flow_run(run_id).get("labels") or {}
    name = labels.get("prefect.worker.name")
    return str(name) if name else None


def test_two_workers_serialise_cycles_on_the_wallet_limit_while_a_snapshot_runs_beside(
        deployed: OpsServer, devnet: DevnetManifest, chain: RpcClient, tmp_path: Path) -> None:
    # `chain` reverts whatever the cycles do on the session's dev chain afterwards.
    devnet.write(tmp_path / "manifest.json")
    extra: dict[str, Any] = {
        "DEXPILOT_MANIFEST": str(tmp_path / "manifest.json"),
        "DEXPILOT_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "DEXPILOT_HOT_WALLET_KEY": ANVIL_KEY_1, "DEXPILOT_PUSHGATEWAY_URL": ""}
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(held)], cwd=PROJECT_ROOT,
                              env=deployed.env(**extra), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    runs: list[str] = []
    output: list[str] = []

    def release() -> str:
        """Tell the helper to let go (once) and return everything it printed."""
        if not output:
            out, _ = holder.communicate(b"\n", timeout=60)
            output.append(out.decode(errors="replace"))
        return output[0]

    try:
        # Worker A takes at most one run, so once it has cycle 1, cycle 2 must go to worker B.
        deployed.start_worker(POOL, "wallet-worker-a", limit=1, **extra)

        def holding() -> bool:
            if holder.poll() is not None:
                raise RuntimeError(f"lock holder exited: {release()}")
            return held.exists()

        wait_for(holding, 60, "the helper to push settings and hold wallet A's slot")
        wallet = held.read_text()
        limit_name = wallet_limit_name(wallet)
        limit = deployed.api("GET", f"/v2/concurrency_limits/{limit_name}")
        assert (limit["limit"], limit["active_slots"]) == (1, 1), limit

        runs.append(deployed.run_deployment("trading-cycle/test"))
        first_worker = wait_for(lambda: _worker_of(deployed, runs[0]), 60,
                                "worker A to take cycle 1")
        deployed.start_worker(POOL, "wallet-worker-b", **extra)
        runs.append(deployed.run_deployment("trading-cycle/test"))
        cycle_ids = runs[:2]

        # While the helper holds the wallet, both cycles run on their workers without taking a
        # single step ...
        def both_waiting() -> bool:
            states = [_state(deployed.flow_run(r)) for r in cycle_ids]
            stepped = [t["name"] for r in cycle_ids for t in _task_runs(deployed, r)]
            assert not stepped and not set(states) & set(FINAL), (
                f"a cycle went past the wallet lock while the helper held it: {states} {stepped}")
            return states == ["RUNNING", "RUNNING"]

        wait_for(both_waiting, 120, "both cycles to be running")
        # ... and meanwhile a snapshot (no wallet lock) runs from start to end beside them.
        runs.append(deployed.run_deployment("market-snapshot/test"))
        snapshot = deployed.wait_final(runs[2], 120)
        assert _state(snapshot) == "COMPLETED", (snapshot["state"],
                                                 deployed.worker_log("wallet-worker-b")[-3000:])
        assert both_waiting()  # still not a step, right before the helper lets go
        assert deployed.api("GET", f"/v2/concurrency_limits/{limit_name}")["active_slots"] == 1

        released_at = time.time()
        assert "released" in release()
        cycles = [deployed.wait_final(r, 120) for r in cycle_ids]
    finally:
        try:
            release()
        except (OSError, ValueError, subprocess.TimeoutExpired):
            stop_process(holder)
        for run_id in runs:  # let started runs finish so no slot stays leased behind a kill
            with contextlib.suppress(TimeoutError):
                deployed.wait_final(run_id, 60)
        deployed.stop_workers()

    for cycle in cycles:
        assert _state(cycle) == "COMPLETED", (
            cycle["state"], deployed.worker_log("wallet-worker-a")[-3000:],
            deployed.worker_log("wallet-worker-b")[-3000:])
    # One cycle on each worker.
    assert [(c["labels"] or {}).get("prefect.worker.name") for c in cycles] == [
        first_worker, "wallet-worker-b"]
    assert first_worker == "wallet-worker-a"

    # Each cycle's wallet-locked section: from its first step (reconcile, taken after the lock)
    # to the end of its last step (before the lock is let go).
    sections = []
    for cycle in cycles:
        tasks = _task_runs(deployed, cycle["id"])
        assert tasks and all(_state(t) == "COMPLETED" for t in tasks), tasks
        first = min(tasks, key=lambda t: _time(t["start_time"]))
        assert first["name"].startswith("reconcile-"), first["name"]
        sections.append((min(_time(t["start_time"]) for t in tasks),
                         max(_time(t["end_time"]) for t in tasks)))
    sections.sort()
    assert sections[0][0] >= released_at, "a cycle stepped before the helper let go"
    assert sections[0][1] <= sections[1][0], f"the cycles' locked sections overlap: {sections}"

    # The snapshot ran in parallel: it started after both cycles were running and ended before
    # either took its first step.
    assert all(_time(c["start_time"]) < _time(snapshot["start_time"]) for c in cycles)
    assert _time(snapshot["end_time"]) < sections[0][0]
    assert (snapshot["labels"] or {}).get("prefect.worker.name") == "wallet-worker-b"
    assert deployed.api("GET", f"/v2/concurrency_limits/{limit_name}")["active_slots"] == 0
