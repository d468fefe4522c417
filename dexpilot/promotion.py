"""Staged promotion, the core: which ref, its code, and the gates' verdicts. No Prefect here.

A promotion takes one git commit (``ref``) through three gates; ``flows/promote.py`` runs
them and ``tasks/promote.py`` does their I/O:

1. **test**: the smoke test selection passes at that commit (pytest in a subprocess, in an
   exported copy of the commit), and a backtest on stored data meets the thresholds.
2. **staging**: the staging deployments run that commit; a bounded paper-trading session on a
   dev chain completes its cycles with no error, and every order it made respects the risk
   limits (checked here, independently of the commit's own risk code).
3. **prod**: the prod deployments are switched to the same exported commit, their ``version``
   set to the full commit sha.

The first failing gate stops the promotion; prod is touched only by gate 3.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dexpilot.errors import ConfigError, DexpilotError

GATES = ("test", "staging", "prod")
Gate = Literal["test", "staging", "prod"]

# Tests that need no service started by the session (no chain, PostgreSQL or Prefect): the
# fast core of the suite. A promotion can pass its own selection (pytest arguments).
SMOKE_SELECTION: tuple[str, ...] = ("-m", "not chain and not postgres and not prefect")
SMOKE_TIMEOUT_S = 900.0
RELEASE_MARKER = ".dexpilot-release"

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/^~-]{0,199}$")


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reason: str
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" / "skipped: ..." / why

    def line(self) -> str:
        return f"gate {GATES.index(self.gate) + 1} ({self.gate}): " + (
            "passed" if self.passed else f"FAILED: {self.reason}")


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion attempt, as stored in the promotion history."""

    ref: str
    sha: str
    status: Literal["promoted", "failed"]
    failed_gate: str | None
    reason: str
    started_at: str
    finished_at: str
    gates: list[dict[str, Any]]
    flow_run: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromotionRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_of(ref: str, sha: str, results: Sequence[GateResult], started_at: str,
              flow_run: str = "") -> PromotionRecord:
    failed = next((r for r in results if not r.passed), None)
    passed_all = failed is None and len(results) == len(GATES)
    return PromotionRecord(
        ref=ref, sha=sha, status="promoted" if passed_all else "failed",
        failed_gate=failed.gate if failed else (None if passed_all else "incomplete"),
        reason=failed.line() if failed else ("promoted to prod" if passed_all else "incomplete"),
        started_at=started_at, finished_at=now_iso(), gates=[asdict(r) for r in results],
        flow_run=flow_run,
    )


# -- the commit ----------------------------------------------------------------------------
def _git(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], input=input_bytes,
                              capture_output=True, check=False, timeout=120)
    except FileNotFoundError:
        raise ConfigError("git is not installed: a promotion needs it") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"git {' '.join(args[:2])} in {repo} failed: "
                          f"{message[-1] if message else 'exit ' + str(done.returncode)}")
    return done.stdout


def resolve_ref(repo: Path | str, ref: str) -> str:
    """The full sha of ``ref`` (a sha, tag or branch) in ``repo``; ``ConfigError`` if unknown."""
    if not isinstance(ref, str) or not _REF.match(ref) or ".." in ref:
        raise ConfigError(f"{ref!r} is not a git ref (a commit sha, tag or branch name)")
    repo = Path(repo)
    if not (repo / ".git").exists():
        raise ConfigError(f"{repo} is not a git repository")
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except ConfigError:
        raise ConfigError(f"{ref!r} is not a commit in {repo}") from None


def export_release(repo: Path | str, sha: str, releases_dir: Path | str) -> Path:
    """The files of commit ``sha`` in ``releases_dir/<sha>`` (``git archive``), made once.

    The directory is what the staging and prod deployments run (their pull step changes into
    it), so the code that passed the gates is byte for byte the code prod runs.
    """
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise ConfigError(f"{sha!r} is not a full commit sha")
    target = Path(releases_dir).resolve() / sha
    marker = target / RELEASE_MARKER
    if marker.is_file() and marker.read_text().strip() == sha:
        return target
    archive = _git(Path(repo), "archive", "--format=tar", sha)
    partial = target.with_name(f"{sha}.partial")
    if partial.exists():
        _remove_tree(partial)
    partial.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(partial, filter="data")
    (partial / RELEASE_MARKER).write_text(sha + "\n")
    if target.exists():
        _remove_tree(target)
    partial.rename(target)
    return target


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


# -- gate 1: tests and backtest ----------------------------------------------------------
def smoke_command(selection: Sequence[str] = SMOKE_SELECTION) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *selection]


def run_smoke_tests(checkout: Path, selection: Sequence[str] = SMOKE_SELECTION, *,
                    timeout_s: float = SMOKE_TIMEOUT_S,
                    environ: Mapping[str, str] | None = None) -> GateResult:
    """Run the smoke selection of the suite *at the commit* (in its exported copy)."""
    env = dict(os.environ if environ is None else environ)
    # The commit's own modules first: not the installed (editable) project.
    env["PYTHONPATH"] = str(checkout)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "DEXPILOT_MANIFEST",
                 "DEXPILOT_LEDGER_URL"):
        env.pop(name, None)  # the suite starts what it needs itself
    command = smoke_command(selection)
    try:
        done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return GateResult("test", False, f"smoke tests did not finish in {timeout_s:g} s",
                          {"smoke tests": "timeout"})
    tail = _tail(done.stdout + done.stderr)
    summary = tail.splitlines()[-1] if tail else f"exit {done.returncode}"
    if done.returncode != 0:
        failed = [ln for ln in (done.stdout or "").splitlines() if ln.startswith(("FAILED",
                                                                                  "ERROR"))]
        why = "; ".join(failed[:3]) or summary
        return GateResult("test", False, f"smoke tests failed: {why}",
                          {"smoke tests": f"failed: {summary}"})
    return GateResult("test", True, summary, {"smoke tests": f"ok: {summary}"})


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class BacktestReport:
    trades: int
    pnl_quote: int          # raw quote units
    max_drawdown_bps: int


@dataclass(frozen=True)
class BacktestThresholds:
    # On the reference candles the strategy trades ~77 times for a small loss after costs:
    # a commit that stops trading, loses heavily or draws down deeply fails the gate.
    min_trades: int = 10
    min_pnl_quote: int = -5_000_000_000  # -5,000 USDC (6 decimals)
    max_drawdown_bps: int = 500


class BacktestFailed(DexpilotError):
    """The commit's backtest did not run to the end."""


REFERENCE_CANDLES = Path("deployments") / "promotion" / "reference-candles.parquet"
_BACKTEST_SCRIPT = """
import json, sys
from dexpilot.backtest import read_candles, run_backtest, summarise
from dexpilot.backtest.report import pnl_raw
result = run_backtest(read_candles(sys.argv[1]))
report = summarise(result)
print(json.dumps({"trades": report.trade_count, "pnl_quote": pnl_raw(result),
                  "max_drawdown_bps": round(report.max_drawdown_pct * 100)}))
"""


def run_backtest(checkout: Path, *, timeout_s: float = SMOKE_TIMEOUT_S) -> BacktestReport | None:
    """The commit's own backtest on the reference candles stored in the repository
    (``deployments/promotion/reference-candles.parquet``), run in a subprocess at ``checkout``
    like the smoke tests; ``None`` if the commit has no backtest or no reference data."""
    data = checkout / REFERENCE_CANDLES
    if not data.exists() or not (checkout / "dexpilot" / "backtest").is_dir():
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run([sys.executable, "-c", _BACKTEST_SCRIPT, str(data)], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    if done.returncode != 0:
        raise BacktestFailed(f"backtest at the commit failed: {_tail(done.stderr, 5)}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return BacktestReport(int(answer["trades"]), int(answer["pnl_quote"]),
                          int(answer["max_drawdown_bps"]))


def check_backtest(report: BacktestReport | None, limits: BacktestThresholds) -> tuple[bool, str]:
    if report is None:
        return True, "skipped: no backtest available at this commit yet (see run_backtest)"
    problems = []
    if report.trades < limits.min_trades:
        problems.append(f"{report.trades} trades < min_trades {limits.min_trades}")
    if report.pnl_quote < limits.min_pnl_quote:
        problems.append(f"PnL {report.pnl_quote} < min_pnl_quote {limits.min_pnl_quote}")
    if report.max_drawdown_bps > limits.max_drawdown_bps:
        problems.append(f"drawdown {report.max_drawdown_bps} bps > max_drawdown_bps "
                        f"{limits.max_drawdown_bps}")
    if problems:
        return False, "backtest below thresholds: " + "; ".join(problems)
    return True, f"ok: {report.trades} trades, PnL {report.pnl_quote}, " \
                 f"drawdown {report.max_drawdown_bps} bps"


# -- gate 2: the paper session -------------------------------------------------------------
@dataclass(frozen=True)
class SessionOrder:
    client_order_id: str
    token_in: str
    token_out: str
    amount_in: int
    expected_amount_out: int
    min_amount_out: int
    status: str


@dataclass(frozen=True)
class SessionEvidence:
    """What a staging paper session left behind (its flow run, its ledger)."""

    run_state: str                 # the flow run's final state type, e.g. COMPLETED
    run_message: str
    cycles: int | None             # cycles the session reported, if its result was readable
    bot_state: str
    errors: list[str]
    orders: list[SessionOrder]
    transitions: int


def verify_paper_session(evidence: SessionEvidence, *, min_cycles: int, quote_token: str,
                         max_trade_quote: int, max_slippage_bps: int,
                         metrics_note: str | None = None) -> GateResult:
    """Gate 2's verdict: the run completed, no errors, cycles done, every order within limits."""
    checks: dict[str, str] = {}
    failures: list[str] = []

    def check(name: str, ok: bool, why: str) -> None:
        checks[name] = "ok" if ok else why
        if not ok:
            failures.append(f"{name}: {why}")

    check("session run", evidence.run_state == "COMPLETED",
          f"the session flow run ended {evidence.run_state}: {evidence.run_message}")
    check("no errors", not evidence.errors and evidence.bot_state not in ("ERROR", "STOPPED"),
          f"bot is {evidence.bot_state}; errors: {'; '.join(evidence.errors[:3]) or 'none'}")
    cycles = evidence.cycles if evidence.cycles is not None else 0
    check("cycles completed", cycles >= min_cycles,
          f"{cycles} cycle(s) completed, {min_cycles} required")
    check("risk limits", not (breaches := risk_breaches(
        evidence.orders, quote_token=quote_token, max_trade_quote=max_trade_quote,
        max_slippage_bps=max_slippage_bps)), "; ".join(breaches[:3]))
    checks["metrics pushed"] = metrics_note or "skipped: no metrics check configured"
    if failures:
        return GateResult("staging", False, "; ".join(failures), checks)
    return GateResult("staging", True,
                      f"{cycles} paper cycles, {len(evidence.orders)} orders, no errors", checks)


def risk_breaches(orders: Iterable[SessionOrder], *, quote_token: str, max_trade_quote: int,
                  max_slippage_bps: int) -> list[str]:
    """Orders that broke a risk limit, described; checked from the ledger rows alone.

    Every swap is bounded: ``0 < min_amount_out <= expected_amount_out`` and the bound is at
    most ``max_slippage_bps`` below the quote. Orders selling the quote token stay within
    ``max_trade_quote``; orders buying it are valued at their expected output.
    """
    out: list[str] = []
    quote = quote_token.lower()
    for o in orders:
        floor = o.expected_amount_out * (10_000 - max_slippage_bps) // 10_000
        if o.min_amount_out <= 0:
            out.append(f"{o.client_order_id}: unbounded swap (min_amount_out {o.min_amount_out})")
        elif o.min_amount_out > o.expected_amount_out:
            out.append(f"{o.client_order_id}: min_amount_out above the quote")
        elif o.min_amount_out < floor:
            out.append(f"{o.client_order_id}: min_amount_out {o.min_amount_out} allows more than "
                       f"max_slippage_bps {max_slippage_bps} below the quote "
                       f"{o.expected_amount_out} (floor {floor})")
        if o.token_in.lower() == quote:
            value = o.amount_in
        elif o.token_out.lower() == quote:
            value = o.expected_amount_out
        else:
            continue
        if value > max_trade_quote:
            out.append(f"{o.client_order_id}: trade worth {value} > max_trade_quote "
                       f"{max_trade_quote}")
    return out
