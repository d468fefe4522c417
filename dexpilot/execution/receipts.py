"""What a mined swap did, read from its receipt: ERC-20 transfers in and out of the wallet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def token_flows(logs: Iterable[Mapping[str, Any]], wallet: str, token: str) -> tuple[int, int]:
    """(amount of ``token`` sent by ``wallet``, amount received) in these logs."""
    wallet_l, token_l = wallet.lower(), token.lower()
    sent = received = 0
    for log in logs:
        topics = log.get("topics") or []
        if (str(log.get("address", "")).lower() != token_l or len(topics) != 3
                or str(topics[0]).lower() != TRANSFER_TOPIC):
            continue
        value = int(str(log.get("data", "0x0")), 16)
        if _topic_address(str(topics[1])) == wallet_l:
            sent += value
        if _topic_address(str(topics[2])) == wallet_l:
            received += value
    return sent, received
