"""A JSON-RPC proxy on 127.0.0.1 in front of anvil that refuses large ``eth_getLogs`` ranges.

Real providers cap ``eth_getLogs``; this proxy answers any ``eth_getLogs`` whose block range
is wider than ``max_range`` blocks (single or inside a batch) with the error a provider sends,
Infura's by default: ``{"code": -32005, "message": "query returned more than 10000 results"}``.
Everything else is forwarded to the upstream node unchanged. It records every ``eth_getLogs``
it saw (``log_queries``: (from, to, refused, addresses)) and every batch's methods.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

INFURA_REFUSAL = {"code": -32005, "message": "query returned more than 10000 results"}
ALCHEMY_REFUSAL = {"code": -32600,
                   "message": "You can make eth_getLogs requests with up to a 500 block range."}


@dataclass(frozen=True)
class LogQuery:
    from_block: int
    to_block: int
    refused: bool
    addresses: tuple[str, ...]


@dataclass
class RefusingRpcProxy:
    upstream: str
    max_range: int = 10_000
    error: dict[str, Any] = field(default_factory=lambda: dict(INFURA_REFUSAL))
    log_queries: list[LogQuery] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _http: httpx.Client | None = None

    def start(self) -> RefusingRpcProxy:
        self._http = httpx.Client(timeout=30.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, name="rpc-proxy",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._http is not None:
            self._http.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _refusal(self, call: dict[str, Any]) -> dict[str, Any] | None:
        if call.get("method") != "eth_getLogs":
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

    def handle(self, payload: Any) -> Any:
        assert self._http is not None
        calls = payload if isinstance(payload, list) else [payload]
        if isinstance(payload, list):
            with self._lock:
                self.batches.append([str(c.get("method")) for c in calls])
        refusals = [self._refusal(c) for c in calls]
        forward = [c for c, r in zip(calls, refusals, strict=True) if r is None]
        answers: dict[Any, Any] = {}
        if forward:
            body = forward if isinstance(payload, list) else forward[0]
            got = self._http.post(self.upstream, json=body).json()
            for item in got if isinstance(got, list) else [got]:
                answers[item.get("id")] = item
        out = [r if r is not None else answers.get(c.get("id"))
               for c, r in zip(calls, refusals, strict=True)]
        return out if isinstance(payload, list) else out[0]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        proxy: RefusingRpcProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length))
        raw = json.dumps(proxy.handle(payload)).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
