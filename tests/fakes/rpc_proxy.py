"""A JSON-RPC proxy on 127.0.0.1 in front of anvil that misbehaves the ways real endpoints do.

Two kinds of misbehaviour:

- **Range refusals**: with ``max_range`` set, any ``eth_getLogs`` (single or inside a batch)
  wider than that many blocks is answered with the error a provider sends, Infura's by
  default: ``{"code": -32005, "message": "query returned more than 10000 results"}``. Every
  ``eth_getLogs`` seen is recorded (``log_queries``), and every batch's methods (``batches``).
- **Faults** (``inject``): refuse connections, close them without an answer, delay, answer
  HTTP 5xx, 429 with ``Retry-After``, a garbage body, a JSON-RPC error object, a wrong chain
  id, a stale head (every read pinned to an old block), or drop an ``eth_sendRawTransaction``
  before or after forwarding it. A fault may be limited to requests carrying some methods and
  to a number of requests; ``heal()`` ends it. Every request is recorded with the fault it got
  (``requests``), so a test can see retries, their timing and the failover.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

INFURA_REFUSAL = {"code": -32005, "message": "query returned more than 10000 results"}
ALCHEMY_REFUSAL = {"code": -32600,
                   "message": "You can make eth_getLogs requests with up to a 500 block range."}
INTERNAL_ERROR = {"code": -32603, "message": "internal error: backend unavailable"}
SEND = "eth_sendRawTransaction"
# Reads whose block parameter a stale node answers at its own (old) head.
_BLOCK_PARAM = {"eth_call": 1, "eth_getBalance": 1, "eth_getTransactionCount": 1,
                "eth_getCode": 1, "eth_getStorageAt": 2, "eth_getBlockByNumber": 0,
                "eth_simulateV1": 1, "eth_estimateGas": 1}


class Fault(StrEnum):
    REFUSE = "refuse"              # nothing listens: connection refused
    CLOSE = "close"                # the connection is closed without an answer
    DELAY = "delay"                # answered after ``delay_s``
    HTTP_5XX = "http_5xx"          # HTTP 503
    HTTP_429 = "http_429"          # HTTP 429 with Retry-After: ``retry_after``
    GARBAGE = "garbage"            # HTTP 200 with a body that is not JSON
    ERROR_OBJECT = "error_object"  # a JSON-RPC error object for every call
    WRONG_CHAIN = "wrong_chain"    # eth_chainId answers ``chain_id``
    STALE_BLOCK = "stale_block"    # every read answered at block ``block``
    DROP_SEND_BEFORE = "drop_send_before"  # a send is not forwarded, the connection closed
    DROP_SEND_AFTER = "drop_send_after"    # a send is forwarded, then the connection closed


@dataclass(frozen=True)
class LogQuery:
    from_block: int
    to_block: int
    refused: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic()
    methods: tuple[str, ...]
    fault: Fault | None


@dataclass
class _Injected:
    fault: Fault
    methods: frozenset[str] | None
    remaining: int | None
    delay_s: float
    retry_after: float
    chain_id: int
    block: int | None


@dataclass
class RpcProxy:
    upstream: str
    max_range: int | None = None
    error: dict[str, Any] = field(default_factory=lambda: dict(INFURA_REFUSAL))
    log_queries: list[LogQuery] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    _injected: _Injected | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _http: httpx.Client | None = None
    _port: int = 0

    def start(self) -> RpcProxy:
        self._http = httpx.Client(timeout=30.0)
        self._listen()
        return self

    def _listen(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="rpc-proxy",
                         daemon=True).start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stop(self) -> None:
        self._close_listener()
        if self._http is not None:
            self._http.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- faults --------------------------------------------------------------------------
    def inject(self, fault: Fault, *, methods: set[str] | None = None, times: int | None = None,
               delay_s: float = 0.0, retry_after: float = 1.0, chain_id: int = 999,
               block: int | None = None) -> None:
        """From now on, requests carrying one of ``methods`` (any, if unset) get ``fault``;
        after ``times`` of them (unset: every one) the proxy behaves again."""
        if fault is Fault.STALE_BLOCK and block is None:
            block = self._upstream_head()
        with self._lock:
            self._injected = _Injected(fault, frozenset(methods) if methods else None, times,
                                       delay_s, retry_after, chain_id, block)
        if fault is Fault.REFUSE:
            self._close_listener()

    def heal(self) -> None:
        with self._lock:
            refusing = self._injected is not None and self._injected.fault is Fault.REFUSE
            self._injected = None
        if refusing:
            self._listen()

    def faulted(self, fault: Fault) -> list[Seen]:
        """The requests that got ``fault``."""
        with self._lock:
            return [r for r in self.requests if r.fault is fault]

    def _upstream_head(self) -> int:
        assert self._http is not None
        answer = self._http.post(self.upstream, json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "eth_blockNumber", "params": []})
        return int(answer.json()["result"], 16)

    def _fault_for(self, methods: tuple[str, ...]) -> _Injected | None:
        with self._lock:
            injected = self._injected
            hit = injected is not None and (
                injected.methods is None or any(m in injected.methods for m in methods))
            if injected is not None and injected.fault in (Fault.DROP_SEND_BEFORE,
                                                           Fault.DROP_SEND_AFTER):
                hit = hit and SEND in methods
            if hit and injected is not None and injected.remaining is not None:
                injected.remaining -= 1
                if injected.remaining <= 0:
                    self._injected = None
            self.requests.append(Seen(time.monotonic(), methods,
                                      injected.fault if hit and injected else None))
            return injected if hit else None

    # -- the range refusal ---------------------------------------------------------------
    def _refusal(self, call: dict[str, Any]) -> dict[str, Any] | None:
        if call.get("method") != "eth_getLogs" or self.max_range is None:
            return None
        query = (call.get("params") or [{}])[0]
        start, stop = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        refused = stop - start + 1 > self.max_range
        addresses = query.get("address") or []
        if isinstance(addresses, str):
            addresses = [addresses]
        with self._lock:
            self.log_queries.append(LogQuery(start, stop, refused, tuple(addresses)))
        if not refused:
            return None
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": dict(self.error)}

    def forward(self, payload: Any, injected: _Injected | None = None) -> Any:
        assert self._http is not None
        calls = payload if isinstance(payload, list) else [payload]
        if isinstance(payload, list):
            with self._lock:
                self.batches.append([str(c.get("method")) for c in calls])
        if injected is not None and injected.fault is Fault.ERROR_OBJECT:
            out = [{"jsonrpc": "2.0", "id": c.get("id"), "error": dict(INTERNAL_ERROR)}
                   for c in calls]
            return out if isinstance(payload, list) else out[0]
        stale = injected.block if injected is not None and \
            injected.fault is Fault.STALE_BLOCK else None
        if stale is not None:
            calls = [_pinned(c, stale) for c in calls]
        refusals = [self._refusal(c) for c in calls]
        forward = [c for c, r in zip(calls, refusals, strict=True) if r is None]
        forward_upstream = [c for c in forward
                            if not (stale is not None and c.get("method") == "eth_blockNumber")]
        answers: dict[Any, Any] = {}
        if forward_upstream:
            body = forward_upstream if isinstance(payload, list) else forward_upstream[0]
            got = self._http.post(self.upstream, json=body).json()
            for item in got if isinstance(got, list) else [got]:
                answers[item.get("id")] = item
        for c in forward:
            if stale is not None and c.get("method") == "eth_blockNumber":
                answers[c.get("id")] = {"jsonrpc": "2.0", "id": c.get("id"), "result": hex(stale)}
            if injected is not None and injected.fault is Fault.WRONG_CHAIN \
                    and c.get("method") == "eth_chainId":
                answers[c.get("id")] = {"jsonrpc": "2.0", "id": c.get("id"),
                                        "result": hex(injected.chain_id)}
        out = [r if r is not None else answers.get(c.get("id"))
               for c, r in zip(calls, refusals, strict=True)]
        return out if isinstance(payload, list) else out[0]


def _pinned(call: dict[str, Any], block: int) -> dict[str, Any]:
    """The call as a node stuck at ``block`` answers it: "latest" and "pending" are its head."""
    position = _BLOCK_PARAM.get(str(call.get("method")))
    params = list(call.get("params") or [])
    if position is None:
        return call
    while len(params) <= position:
        params.append("latest")
    if params[position] in ("latest", "pending", "safe", "finalized"):
        params[position] = hex(block)
    return {**call, "params": params}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        proxy: RpcProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length))
        calls = payload if isinstance(payload, list) else [payload]
        injected = proxy._fault_for(tuple(str(c.get("method")) for c in calls))
        fault = injected.fault if injected is not None else None
        if fault in (Fault.CLOSE, Fault.DROP_SEND_BEFORE):
            self._hang_up()
            return
        if fault is Fault.DELAY and injected is not None:
            time.sleep(injected.delay_s)
        if fault is Fault.HTTP_5XX:
            self._answer(503, b"upstream unavailable", "text/plain")
            return
        if fault is Fault.HTTP_429 and injected is not None:
            self._answer(429, b'{"message":"rate limited"}', "application/json",
                         {"Retry-After": f"{injected.retry_after:g}"})
            return
        if fault is Fault.GARBAGE:
            self._answer(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        answer = proxy.forward(payload, injected)
        if fault is Fault.DROP_SEND_AFTER:
            self._hang_up()
            return
        self._answer(200, json.dumps(answer).encode(), "application/json")

    def _answer(self, status: int, body: bytes, content_type: str,
                headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _hang_up(self) -> None:
        """Close the connection without a byte of answer (a crashed or dropping endpoint)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
