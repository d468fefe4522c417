"""What a trading session did, cycle by cycle, in one summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dexpilot.trading.cycle import CycleReport

# In-process observers of finished cycles (the `dexpilot demo` progress bar); a deployed
# session has none and reports through its flow run instead.
CYCLE_LISTENERS: list[Callable[[CycleReport], None]] = []


@dataclass
class SessionSummary:
    cycles: int = 0
    skipped: int = 0
    signals: int = 0
    orders: int = 0
    filled: int = 0
    failed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    gas_cost_wei: int = 0
    last_block: int = 0

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

    def bound_reached(self, max_cycles: int | None, max_seconds: float | None,
                      started: float) -> bool:
        if max_cycles is not None and self.cycles >= max_cycles:
            return True
        return max_seconds is not None and time.monotonic() - started >= max_seconds
