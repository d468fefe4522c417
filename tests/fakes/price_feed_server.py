"""A local stand-in for CoinGecko's ``GET /api/v3/simple/price`` on 127.0.0.1.

A real HTTP server (stdlib ``http.server`` in a thread) answering in the documented shape:
``?ids=ethereum,usd-coin&vs_currencies=usd[&include_last_updated_at=true]`` ->
``{"ethereum": {"usd": 3000.1, "last_updated_at": 1767225600}, "usd-coin": {...}}``. Unknown
ids are left out of the answer, as the real API does; a request without ``ids`` or
``vs_currencies`` gets a 400 with CoinGecko's error body.

Set prices with ``set_price(id, usd)`` (and ``updated_at`` for ``last_updated_at``); make it
misbehave for the next requests with ``fail_next(mode, times=1, ...)``:
``"429"`` (with ``Retry-After``), ``"5xx"``, ``"garbage"`` (an HTML page with status 200),
``"shape"`` (JSON of the wrong shape: the price as a string), ``"empty"`` (``{}``) and
``"slow"`` (holds the answer up to ``delay`` s, released at once by ``reset``/``stop``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/api/v3"
PRICE_PATH = API_PREFIX + "/simple/price"


@dataclass
class Failure:
    mode: str
    times: int
    status: int = 503
    retry_after: str | None = "7"
    delay: float = 5.0


@dataclass(frozen=True)
class Recorded:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int


@dataclass
class FakePriceFeed:
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    updated_at: dict[str, int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> FakePriceFeed:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-price-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        """The API base, like ``https://api.coingecko.com/api/v3``."""
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{API_PREFIX}"

    # -- behaviour -------------------------------------------------------------------------
    def set_price(self, feed_id: str, usd: float, *, updated_at: int | None = None,
                  vs: str = "usd") -> None:
        with self._lock:
            self.prices.setdefault(feed_id, {})[vs] = usd
            if updated_at is not None:
                self.updated_at[feed_id] = updated_at

    def fail_next(self, mode: str, times: int = 1, **options: Any) -> None:
        """Misbehave for the next ``times`` requests (-1: until ``reset``)."""
        with self._lock:
            self._failures.append(Failure(mode, times, **options))

    def reset(self) -> None:
        self._release.set()  # let any held "slow" answer go
        with self._lock:
            self._failures.clear()
            self.requests.clear()
            self.prices.clear()
            self.updated_at.clear()
            self._release = threading.Event()

    @contextmanager
    def failing(self, mode: str, **options: Any) -> Iterator[None]:
        self.fail_next(mode, times=-1, **options)
        try:
            yield
        finally:
            with self._lock:
                self._failures.clear()

    def _take_failure(self) -> Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            if failure.times > 0:
                failure.times -= 1
                if failure.times == 0:
                    self._failures.pop(0)
            return failure

    def answer(self, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        ids = [i for i in params.get("ids", "").split(",") if i]
        vs = [v for v in params.get("vs_currencies", "").lower().split(",") if v]
        if not ids or not vs:
            missing = "ids" if not ids else "vs_currencies"
            return 400, {"error": f"Missing parameter {missing}"}, {}
        with_time = params.get("include_last_updated_at") == "true"
        body: dict[str, dict[str, float | int]] = {}
        with self._lock:
            for feed_id in ids:
                known = self.prices.get(feed_id)
                if known is None:
                    continue  # the real API leaves unknown ids out
                entry: dict[str, float | int] = {c: known[c] for c in vs if c in known}
                if with_time and feed_id in self.updated_at:
                    entry["last_updated_at"] = self.updated_at[feed_id]
                body[feed_id] = entry
        return 200, body, {}


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-coingecko/3"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        fake: FakePriceFeed = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self._answer(fake, parts.path, params)
        fake.requests.append(Recorded(parts.path, params, headers, status))
        self._send(status, body, extra)

    def _answer(self, fake: FakePriceFeed, path: str,
                params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if path != PRICE_PATH:
            return 404, {"error": "Incorrect path. Please check https://www.coingecko.com/api/"}, {}
        failure = fake._take_failure()
        if failure is not None:
            if failure.mode == "429":
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return 429, {"status": {"error_code": 429, "error_message":
                                        "You've exceeded the Rate Limit."}}, headers
            if failure.mode == "5xx":
                return failure.status, {"error": "upstream unavailable"}, {}
            if failure.mode == "garbage":
                return 200, b"<html><body>Just a moment...</body></html>", {}
            if failure.mode == "slow":
                fake._release.wait(failure.delay)
            if failure.mode == "empty":
                return 200, {}, {}
            if failure.mode == "shape":
                status, body, headers = fake.answer(params)
                return status, {k: {c: str(v) for c, v in e.items()}
                                for k, e in body.items()}, headers
        return fake.answer(params)

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if not isinstance(body, bytes)
                             else "text/html")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass
