"""Argument checks for the ``Ledger`` helpers: each returns the value (normalised) or raises a
``TypeError``/``ValueError`` that names the field, before anything touches the database."""

from __future__ import annotations

import math
from datetime import datetime
from enum import Enum
from typing import TypeVar

from eth_utils.address import (
    is_checksum_address,
    is_checksum_formatted_address,
    is_hex_address,
    to_checksum_address,
)
from eth_utils.crypto import keccak

from dexpilot.config import ENVIRONMENTS
from dexpilot.ledger.models import (
    ErrorKind,
    OrderStatus,
    SignalRow,
    TradeMode,
    TxPurpose,
    TxStatus,
)
from dexpilot.ledger.types import check_raw_amount

EnumT = TypeVar("EnumT", OrderStatus, TradeMode, ErrorKind, TxPurpose, TxStatus)

_HEX_DIGITS = frozenset("0123456789abcdef")


def aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime; give it a time zone (UTC)")
    return value


def positive_amount(value: object, what: str) -> int:
    amount = check_raw_amount(value, what=what)
    if amount == 0:
        raise ValueError(f"{what} must be greater than 0")
    return amount


def chain_int(value: object, what: str) -> int:
    """A nonce, block number or gas figure: stored as BIGINT, so within [0, 2**63)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value < 2**63:
        raise ValueError(f"{what} must be within [0, 2**63), got {value}")
    return value


def address(value: object, what: str) -> str:
    """An EVM address in its EIP-55 form, so lookups never miss on letter case."""
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValueError(f"{what}: {value!r} is not an Ethereum address (0x + 40 hex digits)")
    # Mixed case claims an EIP-55 checksum; a wrong one means a mistyped address.
    if is_checksum_formatted_address(value) and not is_checksum_address(value):
        raise ValueError(f"{what}: {value!r} has a wrong EIP-55 checksum")
    return str(to_checksum_address(value))


def tx_hash(value: object) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != 66 or not text.startswith("0x") or not set(text[2:]) <= _HEX_DIGITS:
        raise ValueError(f"tx_hash: {value!r} is not a transaction hash (0x + 64 hex digits)")
    return text


def signed_tx(raw: object, hash_: str) -> str:
    """The signed raw transaction as lowercase ``0x`` hex, checked to hash to ``hash_``.

    A transaction's hash is the keccak-256 of its signed bytes (typed transactions included),
    so a mismatch means the row would re-broadcast a different transaction than the one it is
    reconciled by: refused before anything is written.
    """
    text = raw.lower() if isinstance(raw, str) else ""
    body = text[2:]
    if not text.startswith("0x") or not body or len(body) % 2 or not set(body) <= _HEX_DIGITS:
        shown = raw if not isinstance(raw, str) or len(raw) <= 20 else raw[:20] + "..."
        raise ValueError(f"raw_tx: {shown!r} is not a signed transaction (0x + hex bytes)")
    actual = "0x" + keccak(bytes.fromhex(body)).hex()
    if actual != hash_:
        raise ValueError(f"raw_tx hashes to {actual}, not to tx_hash {hash_}")
    return text


def fee_caps(max_fee: object, priority_fee: object) -> tuple[int, int]:
    """EIP-1559 fee caps (a legacy gas price goes in both); the tip cannot exceed the cap."""
    fee = check_raw_amount(max_fee, what="max_fee_per_gas")
    tip = check_raw_amount(priority_fee, what="max_priority_fee_per_gas")
    if tip > fee:
        raise ValueError(
            f"max_priority_fee_per_gas {tip} exceeds max_fee_per_gas {fee}; no node accepts that"
        )
    return fee, tip


def env(value: object) -> str:
    if not isinstance(value, str) or value not in ENVIRONMENTS:
        raise ValueError(f"env: {value!r} is not one of {', '.join(ENVIRONMENTS)}")
    return value


def name(value: object, what: str, *, max_len: int = 64) -> str:
    text = text_field(value, what)
    if len(text) > max_len:
        raise ValueError(f"{what} is longer than {max_len} characters")
    return text


def optional_name(value: object, what: str, *, max_len: int = 64) -> str | None:
    return None if value is None else name(value, what, max_len=max_len)


def text_field(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def state(value: object, what: str) -> str:
    """A bot state name; ``dexpilot.state`` may hand over a str, a StrEnum or a plain Enum."""
    if isinstance(value, Enum):
        value = value.value if isinstance(value.value, str) else value.name
    return name(value, what, max_len=16)


def member(enum: type[EnumT], value: object, what: str) -> EnumT:
    allowed = ", ".join(m.value for m in enum)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be one of {allowed}, got {type(value).__name__}")
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not one of {allowed}") from None


def signal(row: object, index: int) -> SignalRow:
    where = f"signals[{index}]"
    if not isinstance(row, SignalRow):
        raise TypeError(f"{where} must be a SignalRow, got {type(row).__name__}")
    name(row.model, f"{where}.model")
    name(row.pair, f"{where}.pair")
    name(row.side, f"{where}.side", max_len=16)
    for field in ("edge_bps", "confidence"):
        value = getattr(row, field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}.{field} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{where}.{field} must be finite, got {value!r}")
    if not 0.0 <= row.confidence <= 1.0:
        raise ValueError(f"{where}.confidence must be within [0, 1], got {row.confidence}")
    if isinstance(row.horizon_s, bool) or not isinstance(row.horizon_s, int):
        raise TypeError(f"{where}.horizon_s must be an int, got {type(row.horizon_s).__name__}")
    if row.horizon_s <= 0:
        raise ValueError(f"{where}.horizon_s must be > 0, got {row.horizon_s}")
    aware(row.created_at, f"{where}.created_at")
    start = aware(row.inputs_from, f"{where}.inputs_from")
    end = aware(row.inputs_to, f"{where}.inputs_to")
    if start > end:
        raise ValueError(f"{where}: inputs_from {start.isoformat()} is after inputs_to")
    if not isinstance(row.payload, dict):
        raise TypeError(f"{where}.payload must be a dict, got {type(row.payload).__name__}")
    return row
