"""A trading session: cycle after cycle, and what a failed cycle means for the next.

A cycle can fail for reasons a retry cannot cure in time: every endpoint down for a minute, a
node answering garbage, a stale head everywhere. Ending the session then (as it used to, in
2-3 s) leaves ``state show`` saying RUNNING for a session that died; going on forever would
hide an outage. So, the seed's error policy at the session level (``CycleGuard``):

- a cycle that fails with a ``NetworkError`` or ``ApiError`` is recorded (errors table, by
  ``run_cycle``; the ``error`` cycle metric; a log line) and skipped, and the session goes on;
- after ``strategy.max_failed_cycles`` consecutive failed cycles the bot moves to ERROR, the
  reason naming the count and the last error, and the session ends;
- a ``SystemFault`` has already moved the bot to ERROR (``run_cycle``); anything else is a bug,
  and the bot goes to ERROR with it before it propagates, so no dead session reads RUNNING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dexpilot.errors import ApiError, NetworkError, SystemFault
from dexpilot.ledger import ErrorKind
from dexpilot.trading.cycle import CycleReport, TradingRuntime

log = logging.getLogger(__name__)

# In-process observers of finished cycles (the `dexpilot demo` progress bar); a deployed
# session has none and reports through its flow run instead.
CYCLE_LISTENERS: list[Callable[[CycleReport], None]] = []


@dataclass
class SessionSummary:
    cycles: int = 0
    skipped: int = 0
    failed_cycles: int = 0
    signals: int = 0
    orders: int = 0
    filled: int = 0
    failed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    gas_cost_wei: int = 0
    last_block: int = 0
    last_error: str | None = None

    def add(self, report: CycleReport) -> None:
        self.cycles += 1
        self.skipped += report.skipped_reason is not None
        self.signals += report.signals
        self.orders += len(report.executions)
        self.filled += sum(1 for e in report.executions if e.filled)
        self.failed += sum(1 for e in report.executions if not e.filled)
        self.gas_cost_wei += sum(e.gas_cost_wei for e in report.executions)
        for rule, count in report.rejected.items():
            self.rejected[rule] = self.rejected.get(rule, 0) + count
        self.last_block = max(self.last_block, report.block_number)
        for listener in CYCLE_LISTENERS:
            listener(report)

    def add_failure(self, error: str) -> None:
        """A cycle that failed (and was skipped): it counts towards ``max_cycles``."""
        self.cycles += 1
        self.failed_cycles += 1
        self.last_error = error

    def bound_reached(self, max_cycles: int | None, max_seconds: float | None,
                      started: float) -> bool:
        if max_cycles is not None and self.cycles >= max_cycles:
            return True
        return max_seconds is not None and time.monotonic() - started >= max_seconds


@dataclass
class CycleGuard:
    """Runs one cycle for a session under the policy above; counts consecutive failures."""

    runtime: TradingRuntime
    summary: SessionSummary
    consecutive_failures: int = 0

    @property
    def limit(self) -> int:
        return self.runtime.config.strategy.max_failed_cycles

    def run(self, cycle: Callable[[], CycleReport]) -> CycleReport | None:
        """The cycle's report, or ``None`` if it failed and was skipped."""
        rt = self.runtime
        try:
            report = cycle()
        except (NetworkError, ApiError) as exc:
            self.consecutive_failures += 1
            self.summary.add_failure(str(exc))
            log.warning("%s: cycle failed (%d in a row, limit %d), skipped: %s",
                        rt.config.env, self.consecutive_failures, self.limit, exc)
            if self.consecutive_failures >= self.limit:
                reason = (f"{self.consecutive_failures} consecutive trading cycles failed; "
                          f"the last: {exc}")
                rt.state.fault(reason)
                rt.ledger.record_error(rt.config.env, ErrorKind.SYSTEM, "trading_session",
                                       reason)
                log.error("%s: bot moved to ERROR: %s", rt.config.env, reason)
            return None
        except SystemFault:
            raise  # run_cycle has moved the bot to ERROR and recorded it
        except Exception as exc:
            reason = f"trading session died: {type(exc).__name__}: {exc}"
            rt.state.fault(reason)
            rt.ledger.record_error(rt.config.env, ErrorKind.SYSTEM, "trading_session", reason)
            raise
        self.consecutive_failures = 0
        self.summary.add(report)
        return report

    @property
    def session_over(self) -> bool:
        """The bot is STOPPED or in ERROR: the session ends."""
        from dexpilot.state import BotState

        return self.runtime.state.state in (BotState.STOPPED, BotState.ERROR)
