"""The one RPC client: several endpoint URLs, one active, every request counted.

All chain I/O goes through ``RpcClient``: raw JSON-RPC (single and batched) and a ``Web3``
instance whose provider is this client, so web3.py's contract and signing helpers share the
same transport, error mapping and round-trip counter. Failures are mapped onto the error
kinds of ``dexpilot.errors``: no answer (timeout, reset, 429, 5xx) -> ``NetworkError``; a
JSON-RPC error or malformed answer -> ``ApiError``; an error object saying the call reverts is
a ``RevertError``: an answer about the call, not a fault of the endpoint, so no failover
switches on it. Which endpoint to use next is the caller's policy (``dexpilot.chain.failover``):
``switch()`` only rotates, ``return_to_preferred()`` probes the endpoints listed before the
active one and goes back to the first that answers on the right chain.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from web3 import Web3
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from dexpilot.config import redact_url
from dexpilot.errors import ApiError, NetworkError, SystemFault


class RevertError(ApiError):
    """The node ran the call and it reverts: the same answer on every endpoint."""


class WrongChainError(SystemFault):
    """An endpoint serves another chain. A ``SystemFault`` unless another endpoint serves the
    configured one (the failover policy moves on to it)."""


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """How hard to try one endpoint before switching, and when to try the preferred again.

    A ``NetworkError`` is retried on the same endpoint ``retries`` times, waiting
    ``backoff_s`` doubling each time or the ``Retry-After`` the endpoint asked for; a
    Retry-After longer than ``max_retry_after_s`` is not waited for: the next endpoint is
    asked instead. After a switch the endpoints before the active one are probed again once
    every ``probe_interval_s``.
    """

    retries: int = 2
    backoff_s: float = 0.25
    max_retry_after_s: float = 30.0
    probe_interval_s: float = 60.0

    def wait_before_retry(self, attempt: int, exc: NetworkError) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based) after ``exc``, or ``None``:
        do not retry this endpoint."""
        if attempt >= self.retries:
            return None
        if exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.max_retry_after_s else None
        return float(self.backoff_s * 2**attempt)


class RpcClient:
    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0,
                 policy: EndpointPolicy | None = None, chain_id: int | None = None) -> None:
        if not urls:
            raise ValueError("RpcClient needs at least one endpoint URL")
        self.urls = list(urls)
        self.policy = policy or EndpointPolicy()
        # The chain every endpoint must serve; a probe of an endpoint on another chain fails.
        self.expected_chain_id = chain_id
        self._index = 0
        self._left_preferred_at: float | None = None  # monotonic time of the last probe/switch
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self.round_trips = 0
        # Observers (metrics): every request's (url, seconds, error or None); every switch.
        self.on_request: Callable[[str, float, Exception | None], None] | None = None
        self.on_switch: Callable[[str, str], None] | None = None
        # The failover policy's report of each switch with the error that caused it (the
        # trading runtime records it in the errors table).
        self.on_failover: Callable[[str, str, Exception], None] | None = None
        self.w3 = Web3(_ClientProvider(self))
        # Every default middleware either adds round trips (validation asks eth_chainId on each
        # call) or reshapes answers; the chain id is checked once by ``verify_chain_id``.
        self.w3.middleware_onion.clear()

    # -- endpoints -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.urls[self._index]

    @property
    def active_index(self) -> int:
        return self._index

    def switch(self) -> str:
        """Make the next endpoint active (wrapping around) and return its URL."""
        return self._activate((self._index + 1) % len(self.urls))

    def _activate(self, index: int) -> str:
        with self._lock:
            old = self.urls[self._index]
            self._index = index
            new = self.urls[index]
            self._left_preferred_at = time.monotonic() if index else None
        if self.on_switch is not None and new != old:
            self.on_switch(old, new)
        return new

    def return_to_preferred(self) -> bool:
        """After a failover, once every probe interval: ask each endpoint listed before the
        active one for its chain id, and make the first that answers (on the expected chain)
        active again. True if it switched."""
        since = self._left_preferred_at
        if self._index == 0 or since is None:
            return False
        if time.monotonic() - since < self.policy.probe_interval_s:
            return False
        self._left_preferred_at = time.monotonic()
        for index in range(self._index):
            try:
                answer = self._send(
                    {"jsonrpc": "2.0", "id": next(self._ids), "method": "eth_chainId",
                     "params": []}, target=self.urls[index])
                chain_id = int(_result(answer, "eth_chainId", redact_url(self.urls[index])), 16)
            except (NetworkError, ApiError, TypeError, ValueError, AttributeError):
                continue
            if self.expected_chain_id is None or chain_id == self.expected_chain_id:
                self._activate(index)
                return True
        return False

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
        answer = self.request("eth_chainId")
        try:
            return int(answer, 16)
        except (TypeError, ValueError) as exc:
            raise ApiError(f"{redact_url(self.url)}: eth_chainId answered {answer!r}") from exc

    def verify_chain_id(self, expected: int) -> None:
        actual = self.chain_id()
        if actual != expected:
            raise WrongChainError(
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

    def _send(self, payload: Any, target: str | None = None) -> Any:
        # Error texts name the endpoint without path or password: providers put keys there.
        target = target or self.url
        url = redact_url(target)
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
        code = err.get("code") if isinstance(err, dict) else None
        if code == 3 or "revert" in str(msg).lower():
            raise RevertError(f"{url}: {method} failed: {msg}")
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
