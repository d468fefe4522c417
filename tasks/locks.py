"""One trading cycle per wallet at a time: a Prefect global concurrency limit per wallet.

The limit (one slot, named after wallet A's address) is created if missing and taken with
``strict=True``, so a missing or unreachable limit stops the cycle instead of letting two
cycles race for the same nonces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

LOCK_TIMEOUT_S = 600


def wallet_limit_name(address: str) -> str:
    return f"dexpilot-wallet-{address.lower()}"


def ensure_wallet_limit(address: str) -> str:
    name = wallet_limit_name(address)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=1, active=True))
    return name


@contextmanager
def wallet_lock(address: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    name = ensure_wallet_limit(address)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield
