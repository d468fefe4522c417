"""The one RPC client: several endpoint URLs, one active, every request counted.

All chain I/O goes through ``RpcClient``: raw JSON-RPC (single and batched) and a ``Web3``
instance whose provider is this client, so web3.py's contract and signing helpers share the
same transport, error mapping and round-trip counter. Failures are mapped onto the error
kinds of ``dexpilot.errors``: no answer (timeout, reset, 429, 5xx) -> ``NetworkError``; a
JSON-RPC error or malformed answer -> ``ApiError``. Which endpoint to use next is the caller's
policy: ``switch()`` only rotates.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from web3 import Web3
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from dexpilot.config import redact_url
from dexpilot.errors import ApiError, NetworkError, SystemFault


class RpcClient:
    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0) -> None:
        if not urls:
            raise ValueError("RpcClient needs at least one endpoint URL")
        self.urls = list(urls)
        self._index = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self.round_trips = 0
        # Observers (metrics): every request's (url, seconds, error or None); every switch.
        self.on_request: Callable[[str, float, Exception | None], None] | None = None
        self.on_switch: Callable[[str, str], None] | None = None
        self.w3 = Web3(_ClientProvider(self))
        # Every default middleware either adds round trips (validation asks eth_chainId on each
        # call) or reshapes answers; the chain id is checked once by ``verify_chain_id``.
        self.w3.middleware_onion.clear()

    # -- endpoints -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.urls[self._index]

    def switch(self) -> str:
        """Make the next endpoint active (wrapping around) and return its URL."""
        with self._lock:
            old = self.urls[self._index]
            self._index = (self._index + 1) % len(self.urls)
            new = self.urls[self._index]
        if self.on_switch is not None:
            self.on_switch(old, new)
        return new

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------
    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call, one round trip; returns ``result`` or raises by error kind."""
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                             "params": list(params)})
        if not isinstance(answer, dict):
            raise ApiError(f"{redact_url(self.url)}: {method} answered with a "
                           f"{type(answer).__name__}")
        return _result(answer, method, redact_url(self.url))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several JSON-RPC calls in one HTTP request (one round trip), results in order."""
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": list(p)}
            for m, p in calls
        ]
        answer = self._post(payload)
        if isinstance(answer, dict):  # a node may answer a whole batch with one error
            _result(answer, "batch", redact_url(self.url))
        if not isinstance(answer, list) or len(answer) != len(payload):
            raise ApiError(f"{redact_url(self.url)}: batch of {len(payload)} got a malformed "
                           "answer")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        shown = redact_url(self.url)
        return [_result(by_id.get(req["id"], {}), str(req["method"]), shown) for req in payload]

    def chain_id(self) -> int:
        return int(self.request("eth_chainId"), 16)

    def verify_chain_id(self, expected: int) -> None:
        actual = self.chain_id()
        if actual != expected:
            raise SystemFault(
                f"chain id mismatch: {redact_url(self.url)} is chain {actual}, "
                f"configuration expects {expected}"
            )

    def wait_for_receipt(
        self, tx_hash: str, *, timeout: float, poll_interval: float = 0.05
    ) -> dict[str, Any]:
        """Poll for a receipt; a transaction still unmined after ``timeout`` is a NetworkError
        for the caller to reconcile by hash and nonce, never a reason to re-send blindly."""
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.request("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() >= deadline:
                raise NetworkError(f"no receipt for {tx_hash} within {timeout} s")
            time.sleep(poll_interval)

    def _post(self, payload: Any) -> Any:
        if self.on_request is None:
            return self._send(payload)
        target, started = self.url, time.perf_counter()
        try:
            answer = self._send(payload)
        except (NetworkError, ApiError) as exc:
            self.on_request(target, time.perf_counter() - started, exc)
            raise
        self.on_request(target, time.perf_counter() - started, None)
        return answer

    def _send(self, payload: Any) -> Any:
        # Error texts name the endpoint without path or password: providers put keys there.
        target, url = self.url, redact_url(self.url)
        self.round_trips += 1
        try:
            response = self._http.post(target, json=payload)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{url}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise NetworkError(f"{url}: HTTP {response.status_code}", retry_after=retry_after)
        if response.status_code >= 400:
            raise ApiError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"{url}: answer is not JSON: {response.text[:200]!r}") from exc


def _result(answer: dict[str, Any], method: str, url: str) -> Any:
    if "error" in answer and answer["error"] is not None:
        err = answer["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise ApiError(f"{url}: {method} failed: {msg}")
    if "result" not in answer:
        raise ApiError(f"{url}: {method} answered without a result")
    return answer["result"]


def _retry_after(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


class _ClientProvider(JSONBaseProvider):
    """Lets web3.py's helpers (contracts, transactions) talk through the RpcClient.

    JSON-RPC errors are handed back as web3 expects them (so a revert becomes web3's
    ``ContractLogicError`` with its reason); transport failures raise ``NetworkError``.
    """

    def __init__(self, client: RpcClient) -> None:
        super().__init__()
        self._client = client

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = self._client._post(
            {"jsonrpc": "2.0", "id": next(self._client._ids), "method": method,
             "params": list(params)}
        )
        if not isinstance(answer, dict):
            raise ApiError(f"{redact_url(self._client.url)}: {method} answered with a "
                           f"{type(answer).__name__}")
        return answer  # type: ignore[return-value]

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self._client.chain_id()
        except (NetworkError, ApiError):
            return False
        return True
