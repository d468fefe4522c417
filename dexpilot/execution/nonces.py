"""Nonces for wallet A that never race and survive restarts.

The chain's pending count is the truth after a reconcile (every transaction the ledger holds
as signed is then either mined, dropped, or known to the node); within a process the manager
also remembers what it handed out, because a node may report its pending count before it has
indexed a transaction it just accepted. One trading cycle per wallet at a time (a Prefect
concurrency limit) means one manager per wallet at a time.
"""

from __future__ import annotations

import threading

from dexpilot.chain.rpc import RpcClient


class NonceManager:
    def __init__(self, client: RpcClient, address: str) -> None:
        self.client = client
        self.address = address
        self._next: int | None = None
        self._lock = threading.Lock()

    def pending_count(self) -> int:
        return int(self.client.request("eth_getTransactionCount", [self.address, "pending"]), 16)

    def confirmed_count(self) -> int:
        return int(self.client.request("eth_getTransactionCount", [self.address, "latest"]), 16)

    def next(self) -> int:
        with self._lock:
            chain = self.pending_count()
            nonce = chain if self._next is None else max(chain, self._next)
            self._next = nonce + 1
            return nonce

    def forget(self) -> None:
        """Drop what this process handed out, e.g. after a nonce was released unused."""
        with self._lock:
            self._next = None
