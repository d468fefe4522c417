"""Revert data in words: a failed call's return data names why it failed, if one reads it.

Shared by the executor (simulations, receipts, traces) and the token-safety probe, which
reports each step's revert in its verdict.
"""

from __future__ import annotations

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector

ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
PANIC = function_signature_to_4byte_selector("Panic(uint256)")


def decode_revert(data: object) -> str | None:
    """The reason in revert data: ``Error(string)``, ``Panic(uint256)`` or a custom error."""
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        return None
    try:
        raw = bytes.fromhex(data[2:])
    except ValueError:
        return None
    try:
        if raw[:4] == ERROR_STRING:
            return str(decode(["string"], raw[4:])[0])
        if raw[:4] == PANIC:
            return f"panic 0x{decode(['uint256'], raw[4:])[0]:02x}"
    except Exception:  # malformed ABI data: report the selector below
        pass
    return f"custom error 0x{raw[:4].hex()}"


def revert_text(data: bytes | str | None) -> str:
    """``decode_revert`` for raw bytes too; a revert without data says so."""
    if isinstance(data, bytes | bytearray):
        data = "0x" + bytes(data).hex()
    return decode_revert(data) or "reverted without a reason"
