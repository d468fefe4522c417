"""EIP-1559 fees: what to offer, and how much more to offer when a transaction is stuck."""

from __future__ import annotations

from dataclasses import dataclass

from dexpilot.chain.rpc import RpcClient

# Nodes only accept a replacement that raises both fee fields by at least 10 %.
MIN_REPLACEMENT_BUMP_PCT = 10


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    base_fee_per_gas: int = 0  # of the latest block, when read (0: not known)

    def bumped(self, pct: int = 15) -> Fees:
        if pct < MIN_REPLACEMENT_BUMP_PCT:
            raise ValueError(f"a replacement must raise fees by >= {MIN_REPLACEMENT_BUMP_PCT} %")
        return Fees(_raise(self.max_fee_per_gas, pct), _raise(self.max_priority_fee_per_gas, pct))


def _raise(value: int, pct: int) -> int:
    return -(-value * (100 + pct) // 100)  # ceiling, so rounding never undercuts the bump


def suggest_fees(client: RpcClient, *, min_priority_wei: int = 10**8) -> Fees:
    """Twice the latest base fee plus a tip: survives six full blocks of base-fee growth."""
    block, tip = client.batch([("eth_getBlockByNumber", ["latest", False]),
                               ("eth_maxPriorityFeePerGas", [])])
    base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
    priority = max(int(tip, 16), min_priority_wei)
    return Fees(2 * base_fee + priority, priority, base_fee)
