"""Staged promotion (seed: update process test -> staging -> prod), run from CI as

    prefect deployment run 'promote/ci' --param ref=<git sha>

Gate 1 (test): the smoke tests pass at that commit and its backtest meets the thresholds.
Gate 2 (staging): the staging deployments run that commit; a bounded paper-trading session on
a fresh dev chain completes with no error and within the risk limits.
Gate 3 (prod): the prod deployments switch to the same commit (``version`` = its sha).

A failing gate stops the promotion: the flow run fails with the gate and the reason, prod is
left as it was, and the attempt is added to the history (`dexpilot promote history`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.promotion import (
    GATES,
    SMOKE_SELECTION,
    BacktestThresholds,
    GateResult,
    now_iso,
    record_of,
)
from tasks.promote import prepare_release, prod_gate, record_promotion, staging_gate, tests_gate
from tasks.run_logging import log_setup

DEFAULT_RELEASES_DIR = PROJECT_ROOT / ".releases"


class PromotionFailed(Exception):
    """A gate refused the commit; the message names the gate and why."""


@flow(name="promote", on_running=[log_setup])
def promote(ref: str, repo: str | None = None, releases_dir: str | None = None,
            smoke: list[str] | None = None, staging_cycles: int = 3,
            staging_timeout_s: float = 300.0, min_backtest_trades: int = 1,
            max_backtest_drawdown_bps: int = 2_000) -> dict[str, Any]:
    """Take ``ref`` through test -> staging -> prod; fail at the first gate that refuses it."""
    logger = get_run_logger()
    started = now_iso()
    repo_path = str(Path(repo) if repo else PROJECT_ROOT)
    releases = str(Path(releases_dir) if releases_dir else DEFAULT_RELEASES_DIR)
    results: list[GateResult] = []
    sha = ""
    try:
        sha, release = prepare_release(repo_path, ref, releases)
        thresholds = BacktestThresholds(min_trades=min_backtest_trades,
                                        max_drawdown_bps=max_backtest_drawdown_bps)
        selection = list(smoke if smoke is not None else SMOKE_SELECTION)
        for gate in GATES:
            if gate == "test":
                result = tests_gate(release, selection, thresholds)
            elif gate == "staging":
                result = staging_gate(sha, release, staging_cycles, staging_timeout_s)
            else:
                result = prod_gate(sha, release)
            results.append(result)
            logger.info(result.line())
            if not result.passed:
                break
    except Exception as exc:  # a broken ref or repository: refused before any gate ran
        gate = GATES[min(len(results), len(GATES) - 1)]
        results.append(GateResult(gate, False, f"{type(exc).__name__}: {exc}"))
    record = record_of(ref, sha, results, started, flow_run=str(flow_run.id or ""))
    record_promotion(record)
    if record.status != "promoted":
        raise PromotionFailed(f"promotion of {ref} stopped: {record.reason}; prod is unchanged")
    return record.to_json()


if __name__ == "__main__":
    import sys

    promote(ref=sys.argv[1] if len(sys.argv) > 1 else "HEAD")
