"""One trading cycle per wallet at a time: a Prefect global concurrency limit per wallet.

The limit (one slot, named after wallet A's address) is created if missing and taken with
``strict=True``, so a missing or unreachable limit stops the cycle instead of letting two
cycles race for the same nonces.

A holder killed with SIGKILL never releases its slot: the server frees it only when the
slot's lease expires (its repossessor service looks every
``PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS``, 15 s by default). Prefect's default lease
is 300 s, so a restarted session waited five minutes for a dead one. The lease here is short,
``wallet_lease_s``: two cycle intervals, but never below the 60 s the server's API accepts at
least. A live holder keeps it: Prefect's ``concurrency`` renews the lease from a thread every
three quarters of its duration, and with ``strict=True`` a renewal that fails cancels the
holder's work, so a holder whose lease lapsed does not trade on beside the next one. That is
what lets a holder treat a TRADING bot state as left by a dead process (``dexpilot.state``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

LOCK_TIMEOUT_S = 600
# The server refuses shorter leases (``lease_duration`` has ``ge=60`` in Prefect 3.8.8's
# /v2/concurrency_limits/increment-with-lease and /leases/{id}/renew).
MIN_LEASE_S = 60.0
# How often a default Prefect server looks for expired leases: a dead holder's slot is free at
# most this long after its lease ran out.
REPOSSESSOR_LOOP_S = 15.0


def wallet_limit_name(address: str) -> str:
    return f"dexpilot-wallet-{address.lower()}"


def wallet_lease_s(cycle_interval_s: float | None = None) -> float:
    """The wallet slot's lease: two cycle intervals, at least the server's minimum."""
    return max(2 * (cycle_interval_s or 0.0), MIN_LEASE_S)


def dead_holder_bound_s(cycle_interval_s: float | None = None) -> float:
    """At most this long after a holder dies its slot is free again (on a default server)."""
    return wallet_lease_s(cycle_interval_s) + REPOSSESSOR_LOOP_S


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
def wallet_lock(address: str, timeout_s: float = LOCK_TIMEOUT_S, *,
                cycle_interval_s: float | None = None) -> Iterator[None]:
    """Hold wallet A's slot; raises ``TimeoutError`` if it is not free within ``timeout_s``."""
    name = ensure_wallet_limit(address)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True,
                     lease_duration=wallet_lease_s(cycle_interval_s)):
        yield
