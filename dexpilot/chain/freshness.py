"""A node that stopped following the chain is an endpoint fault, not a quiet market.

A frozen or lagging node answers every read without an error, on an old block: the bot would
trade on prices the market left long ago (measured: 12 cycles on one block over 15 s, no
error, no switch). So each snapshot's head is checked, and a stale one raises
``StaleHeadError`` (an ``ApiError``: the failover policy switches to the next endpoint) when

- its block is not newer than the highest block seen for longer than ``stale_after_blocks``
  block times (the head is stuck), or
- its block timestamp lags the wall clock by more than ``max_head_lag_s`` (the node is behind).

Each bound is off when unset: an automining dev chain makes a block only per transaction, so
its head is "stuck" whenever the bot does not trade. With every endpoint stale, the snapshot
step fails, the cycle is skipped and recorded (no trade on an old block), and the
``dexpilot_chain_head_stale`` gauge is 1: the ``DexpilotChainHeadStale`` alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dexpilot.config import ChainConfig, redact_url
from dexpilot.errors import ApiError


class StaleHeadError(ApiError):
    """The endpoint's head block is stuck or too old."""


@dataclass
class HeadFreshness:
    block_time_s: float | None = None
    stale_after_blocks: float = 10.0
    max_head_lag_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    highest_block: int = -1
    _advanced_at: float = field(default=0.0, repr=False)

    @classmethod
    def for_chain(cls, chain: ChainConfig) -> HeadFreshness:
        return cls(block_time_s=chain.block_time_s, stale_after_blocks=chain.stale_after_blocks,
                   max_head_lag_s=chain.max_head_lag_s)

    @property
    def stuck_bound_s(self) -> float | None:
        return None if self.block_time_s is None else self.block_time_s * self.stale_after_blocks

    def check(self, block_number: int, block_timestamp: int, url: str) -> None:
        """Raise ``StaleHeadError`` if this head (read from ``url``) is stale; else note it."""
        shown = redact_url(url)
        if self.max_head_lag_s is not None:
            lag = self.wall_clock() - block_timestamp
            if lag > self.max_head_lag_s:
                raise StaleHeadError(
                    f"{shown}: head block {block_number} is {lag:.0f} s old, more than the "
                    f"{self.max_head_lag_s:g} s allowed (chain.max_head_lag_s)")
        now = self.clock()
        if block_number > self.highest_block:
            self.highest_block, self._advanced_at = block_number, now
            return
        bound = self.stuck_bound_s
        if bound is None:
            return
        stuck = now - self._advanced_at
        if stuck > bound:
            raise StaleHeadError(
                f"{shown}: head block {block_number} is not past block {self.highest_block}, "
                f"seen {stuck:.1f} s ago; the bound is {bound:g} s "
                f"({self.stale_after_blocks:g} blocks of {self.block_time_s:g} s)")
