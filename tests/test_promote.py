"""The staged promotion, end to end on the ops server: `promote/ci` runs on a test-pool worker,
its staging session on a staging-pool worker, each at the promoted commit. Failing refs are real
commits in a temporary clone of this repository."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.promotion import (
    BacktestReport,
    BacktestThresholds,
    SessionOrder,
    check_backtest,
    risk_breaches,
)
from tests.fixtures.ops import OpsServer

SMOKE = ["tests/test_risk.py"]  # a quick selection; the deployment's default is wider
USDC = "0x00000000000000000000000000000000000000aa"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=promotion-test",
                           "-c", "user.email=promotion-test@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, path: str, old: str, new: str, message: str) -> str:
    file = repo / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}: update this test"
    file.write_text(text.replace(old, new, 1))
    _git(repo, "commit", "-q", "-am", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    clone = tmp_path_factory.mktemp("promote-repo") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(PROJECT_ROOT), str(clone)],
                   check=True)
    good = _git(clone, "rev-parse", "HEAD")
    _git(clone, "checkout", "-q", "-b", "broken-tests")
    fails_tests = _commit(clone, "dexpilot/risk/checks.py", "if value > limit:",
                          "if value > limit * 2:", "loosen max_trade (a test catches it)")
    _git(clone, "checkout", "-q", good, "-b", "broken-session")
    session_errors = _commit(
        clone, "dexpilot/trading/cycle.py", "    report.reconciled = step(",
        "    raise RuntimeError('boom: broken cycle')\n    report.reconciled = step(",
        "a cycle that raises")
    _git(clone, "checkout", "-q", good, "-b", "breaks-risk")
    breaks_risk = _commit(
        clone, "dexpilot/trading/cycle.py",
        "min_amount_out(leg.amount_out, rt.config.risk.max_slippage_bps),",
        "min_amount_out(leg.amount_out, rt.config.risk.max_slippage_bps * 4),",
        "executor bound ignores max_slippage_bps")
    return {"repo": clone, "good": good, "fails_tests": fails_tests,
            "session_errors": session_errors, "breaks_risk": breaks_risk}


@pytest.fixture(scope="module")
def promoter(deployed: OpsServer) -> Iterator[OpsServer]:
    deployed.start_worker("dexpilot-test", "ci-worker")
    deployed.start_worker("dexpilot-staging", "staging-worker")
    try:
        yield deployed
    finally:
        deployed.stop_workers()


def _promote(server: OpsServer, refs: dict[str, object], which: str,
             tmp: Path) -> dict[str, object]:
    ref = str(refs[which])
    run_id = server.run_deployment("promote/ci", {
        "ref": ref, "repo": str(refs["repo"]), "releases_dir": str(tmp / "releases"),
        "smoke": SMOKE, "staging_cycles": 2, "staging_timeout_s": 150})
    return server.wait_final(run_id, 300)


def _prod_versions(server: OpsServer) -> dict[str, object]:
    out = {}
    for d in server.api("POST", "/deployments/filter",
                        json={"deployments": {"name": {"any_": ["prod"]}}}):
        out[d["id"]] = (d["version"], json.dumps(d["pull_steps"]))
    return out


def _history(server: OpsServer) -> str:
    done = subprocess.run([str(Path(PROJECT_ROOT / ".venv/bin/dexpilot")), "promote", "history",
                           "--json"], cwd=PROJECT_ROOT, env=server.env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("which", "gate", "why"), [
    ("fails_tests", "test", "smoke tests failed"),
    ("session_errors", "staging", "session run"),
    ("breaks_risk", "staging", "max_slippage_bps"),
])
def test_a_failing_gate_stops_the_promotion_and_leaves_prod_alone(
        promoter: OpsServer, refs: dict[str, object], tmp_path: Path, which: str, gate: str,
        why: str) -> None:
    before = _prod_versions(promoter)
    run = _promote(promoter, refs, which, tmp_path)
    assert run["state"]["type"] == "FAILED", run["state"]
    message = run["state"]["message"] or ""
    assert f"({gate}): FAILED" in message and why in message, message
    assert _prod_versions(promoter) == before
    latest = json.loads(_history(promoter))[0]
    assert latest["sha"] == refs[which] and latest["status"] == "failed"
    assert latest["failed_gate"] == gate


def test_a_good_ref_passes_every_gate_and_reaches_prod(
        promoter: OpsServer, refs: dict[str, object], tmp_path: Path) -> None:
    run = _promote(promoter, refs, "good", tmp_path)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    sha = str(refs["good"])
    release = str(tmp_path / "releases" / sha)
    for d in promoter.api("POST", "/deployments/filter",
                          json={"deployments": {"name": {"any_": ["prod", "staging"]}}}):
        assert d["version"] == sha, d["name"]
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
            "directory": release}}]
    latest = json.loads(_history(promoter))[0]
    assert latest["sha"] == sha and latest["status"] == "promoted"
    assert [g["gate"] for g in latest["gates"]] == ["test", "staging", "prod"]
    assert all(g["passed"] for g in latest["gates"])
    # The commit's own backtest ran on the stored reference candles and met the thresholds.
    assert latest["gates"][0]["checks"]["backtest"].startswith("ok: "), latest["gates"][0]


def test_an_unknown_ref_is_refused_before_any_gate(promoter: OpsServer, tmp_path: Path,
                                                   refs: dict[str, object]) -> None:
    run_id = promoter.run_deployment("promote/ci", {"ref": "no-such-branch",
                                                    "repo": str(refs["repo"])})
    run = promoter.wait_final(run_id, 120)
    assert run["state"]["type"] == "FAILED"
    assert "not a commit" in (run["state"]["message"] or "")


def test_risk_breaches_are_found_from_the_orders_alone() -> None:
    ok = SessionOrder("a", USDC, "0xb", 1_000, 990, 985, "SIMULATED")
    loose = SessionOrder("b", USDC, "0xb", 1_000, 1_000, 900, "SIMULATED")
    big = SessionOrder("c", USDC, "0xb", 5_000, 1_000, 996, "SIMULATED")
    unbounded = SessionOrder("d", "0xb", USDC, 1, 1_000, 0, "SIMULATED")
    found = risk_breaches([ok, loose, big, unbounded], quote_token=USDC.upper(),
                          max_trade_quote=2_000, max_slippage_bps=50)
    assert [f.split(":")[0] for f in found] == ["b", "c", "d"]


def test_backtest_thresholds() -> None:
    limits = BacktestThresholds(min_trades=5, min_pnl_quote=0, max_drawdown_bps=500)
    assert check_backtest(BacktestReport(10, 1, 100), limits)[0]
    ok, why = check_backtest(BacktestReport(2, -5, 900), limits)
    assert not ok and "min_trades" in why and "PnL" in why and "drawdown" in why
    assert check_backtest(None, limits)[1].startswith("skipped")
