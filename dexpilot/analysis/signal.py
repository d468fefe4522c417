"""A trading signal: what a model believes, how strongly, over what horizon, from which data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "buy"  # buy the pair's base token with its quote token
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Signal:
    model: str
    pair: str  # "BASE/QUOTE"
    side: Side
    edge_bps: float  # expected edge after the costs the model knows about
    confidence: float  # 0..1
    horizon_s: float
    inputs_from: datetime | None = None
    inputs_to: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
