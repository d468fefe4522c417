"""What a strategy wants done: sell an exact amount of one token for another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dexpilot.money import Token


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """Sell exactly ``amount_in`` raw units of ``token_in`` for as much ``token_out`` as possible.

    ``venue`` pins the order to one venue (an arbitrage leg must trade where the price is);
    ``None`` lets the router choose and split. ``min_edge_bps`` is the edge the strategy
    expects: the risk check refuses the trade if the route no longer offers it.
    """

    client_order_id: str
    strategy: str
    token_in: Token
    token_out: Token
    amount_in: int
    venue: str | None = None
    min_edge_bps: float = 0.0
    group_id: str | None = None  # legs of one arbitrage share a group
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.amount_in, int) or self.amount_in <= 0:
            raise ValueError(f"order {self.client_order_id}: amount_in must be a positive int")
        if self.token_in == self.token_out:
            raise ValueError(f"order {self.client_order_id}: token_in equals token_out")
