"""A local stand-in for 0x Swap API v2 (``GET /swap/allowance-holder/quote``) on 127.0.0.1.

It is a real HTTP server (stdlib ``http.server`` in a thread) that quotes by asking the dev
chain: it calls ``getAmountsOut`` on every Uniswap V2 router for the direct pair and for two
hops through each hub token, and answers with the best one in the shape of 0x's v2 response
(``buyAmount``, ``minBuyAmount`` = buy less ``slippageBps``, ``transaction{to,data,gas,value}``,
``issues.allowance`` when the taker's allowance is short, ``liquidityAvailable``...). The
``transaction`` really executes on the dev chain: it is the router's
``swapExactTokensForTokens`` to the taker, bounded by ``minBuyAmount``, so the router is both
``transaction.to`` and the spender.

It checks the ``0x-api-key`` (401 without or with a wrong one) and ``0x-version: v2`` headers
and the parameters, like the real API, and it can be told to misbehave for the next requests:
``fail_next("5xx" | "429" | "garbage" | "slow" | "no_liquidity" | "echo_key" | "mutate", ...)``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, is_address, to_checksum_address

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import VenueConfig, VenueKind
from dexpilot.errors import ApiError

GET_AMOUNTS_OUT = function_signature_to_4byte_selector("getAmountsOut(uint256,address[])")
SWAP = function_signature_to_4byte_selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)")
ALLOWANCE = function_signature_to_4byte_selector("allowance(address,address)")
BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
QUOTE_PATH = "/swap/allowance-holder/quote"
API_KEY_ENV = "DEXPILOT_ZEROEX_API_KEY"
REQUIRED = ("chainId", "sellToken", "buyToken", "sellAmount", "taker")

Mutator = Callable[[dict[str, Any]], Any]


@dataclass
class Failure:
    mode: str
    times: int
    status: int = 503
    delay: float = 2.0
    retry_after: str | None = "2"
    mutate: Mutator | None = None


@dataclass(frozen=True)
class Recorded:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int


@dataclass
class FakeZeroEx:
    rpc_url: str
    chain_id: int
    routers: Mapping[str, str]  # source name -> Uniswap V2 Router02 address
    hubs: Sequence[str]
    api_key: str = field(default_factory=lambda: "zx-test-" + secrets.token_hex(12))
    deadline_s: int = 600
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _client: RpcClient | None = None

    @classmethod
    def from_manifest(cls, manifest: DevnetManifest, **kwargs: Any) -> FakeZeroEx:
        routers = {v.name: v.router for v in manifest.venues
                   if v.kind is VenueKind.UNISWAP_V2 and v.router is not None}
        weth = next(t.address for t in manifest.tokens if t.symbol == manifest.weth)
        return cls(manifest.rpc_url, manifest.chain_id, routers, [weth], **kwargs)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeZeroEx:
        self._client = RpcClient([self.rpc_url])
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-0x",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._client is not None:
            self._client.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def venue_config(self, name: str = "0x") -> VenueConfig:
        return VenueConfig(name=name, kind=VenueKind.ZEROEX, api_url=self.url,
                           api_key_env=API_KEY_ENV)

    # -- behaviour -----------------------------------------------------------------------
    def fail_next(self, mode: str, times: int = 1, **options: Any) -> None:
        """Misbehave for the next ``times`` quote requests (-1: until ``reset``)."""
        with self._lock:
            self._failures.append(Failure(mode, times, **options))

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self.requests.clear()

    @contextmanager
    def failing(self, mode: str, **options: Any) -> Iterator[None]:
        self.fail_next(mode, times=-1, **options)
        try:
            yield
        finally:
            self.reset()

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

    # -- quoting against the dev chain ---------------------------------------------------
    def _call(self, to: str, data: bytes) -> bytes:
        assert self._client is not None
        result = self._client.request("eth_call", [{"to": to, "data": "0x" + data.hex()},
                                                   "latest"])
        return bytes.fromhex(str(result).removeprefix("0x"))

    def quote(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        sell: str = to_checksum_address(params["sellToken"])
        buy: str = to_checksum_address(params["buyToken"])
        amount = int(params["sellAmount"])
        taker = to_checksum_address(params["taker"])
        slippage = int(params.get("slippageBps", "100"))
        paths: list[list[str]] = [[sell, buy]] + [[sell, h, buy] for h in self.hubs
                                 if h.lower() not in (sell.lower(), buy.lower())]
        best: tuple[int, str, str, list[str]] | None = None
        with self._lock:
            for source, router in self.routers.items():
                for path in paths:
                    try:
                        raw = self._call(router, GET_AMOUNTS_OUT + encode(
                            ["uint256", "address[]"], [amount, path]))
                    except ApiError:  # no such pair on this router
                        continue
                    (amounts,) = decode(["uint256[]"], raw)
                    if best is None or amounts[-1] > best[0]:
                        best = (int(amounts[-1]), source, router, path)
            if best is None or best[0] == 0:
                return 200, {"liquidityAvailable": False, "zid": "0x" + secrets.token_hex(12)}
            buy_amount, source, router, path = best
            min_buy = buy_amount * (10_000 - slippage) // 10_000
            assert self._client is not None
            block = self._client.request("eth_getBlockByNumber", ["latest", False])
            (allowance,) = decode(["uint256"], self._call(
                sell, ALLOWANCE + encode(["address", "address"], [taker, router])))
            (balance,) = decode(["uint256"], self._call(
                sell, BALANCE_OF + encode(["address"], [taker])))
            gas_price = int(self._client.request("eth_gasPrice"), 16)
        deadline = int(block["timestamp"], 16) + self.deadline_s
        data = SWAP + encode(["uint256", "uint256", "address[]", "address", "uint256"],
                             [amount, min_buy, path, taker, deadline])
        gas = 90_000 + 70_000 * (len(path) - 1)
        return 200, {
            "blockNumber": str(int(block["number"], 16)),
            "buyAmount": str(buy_amount),
            "buyToken": buy.lower(),
            "fees": {"integratorFee": None, "zeroExFee": None, "gasFee": None},
            "issues": {
                "allowance": ({"actual": str(allowance), "spender": router.lower()}
                              if allowance < amount else None),
                "balance": ({"token": sell.lower(), "actual": str(balance),
                             "expected": str(amount)} if balance < amount else None),
                "simulationIncomplete": False,
                "invalidSourcesPassed": [],
            },
            "liquidityAvailable": True,
            "minBuyAmount": str(min_buy),
            "route": {
                "fills": [{"from": a.lower(), "to": b.lower(), "source": source,
                           "proportionBps": "10000"} for a, b in pairwise(path)],
                "tokens": [{"address": t.lower(), "symbol": ""} for t in path],
            },
            "sellAmount": str(amount),
            "sellToken": sell.lower(),
            "tokenMetadata": {"buyToken": {"buyTaxBps": "0", "sellTaxBps": "0"},
                              "sellToken": {"buyTaxBps": "0", "sellTaxBps": "0"}},
            "totalNetworkFee": str(gas * gas_price),
            "transaction": {"to": router.lower(), "data": "0x" + data.hex(), "gas": str(gas),
                            "gasPrice": str(gas_price), "value": "0"},
            "zid": "0x" + secrets.token_hex(12),
        }


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-0x/2"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        fake: FakeZeroEx = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra_headers = self._answer(fake, parts.path, params, headers)
        fake.requests.append(Recorded(parts.path, params, headers, status))
        self._send(status, body, extra_headers)

    def _answer(self, fake: FakeZeroEx, path: str, params: dict[str, str],
                headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if path != QUOTE_PATH:
            return 404, {"name": "NOT_FOUND", "message": f"no route {path}"}, {}
        if headers.get("0x-api-key") != fake.api_key:
            return 401, {"name": "UNAUTHORIZED", "message": "Invalid API key"}, {}
        if headers.get("0x-version") != "v2":
            return 400, {"name": "INPUT_INVALID", "message": "0x-version header must be v2"}, {}
        failure = fake._take_failure()
        if failure is not None:
            if failure.mode == "5xx":
                return failure.status, {"name": "INTERNAL_SERVER_ERROR",
                                        "message": "upstream unavailable"}, {}
            if failure.mode == "429":
                hdrs = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return 429, {"name": "RATE_LIMITED", "message": "Too many requests"}, hdrs
            if failure.mode == "garbage":
                return 200, b"<html><body>502 Bad Gateway</body></html>", {}
            if failure.mode == "slow":
                time.sleep(failure.delay)
            if failure.mode == "echo_key":
                return 400, {"name": "INPUT_INVALID",
                             "message": f"bad request from key {headers.get('0x-api-key')}"}, {}
        missing = [k for k in REQUIRED if not params.get(k)]
        bad = [k for k in ("sellToken", "buyToken", "taker")
               if params.get(k) and not is_address(params[k])]
        if missing or bad or not params.get("sellAmount", "").isdigit():
            return 400, {"name": "INPUT_INVALID", "message": "Validation Failed",
                         "data": {"details": [{"field": k, "reason": "invalid"}
                                              for k in missing + bad]}}, {}
        if params["chainId"] != str(fake.chain_id):
            return 400, {"name": "CHAIN_NOT_SUPPORTED", "message": params["chainId"]}, {}
        if failure is not None and failure.mode == "no_liquidity":
            return 200, {"liquidityAvailable": False, "zid": "0x00"}, {}
        try:
            status, body = fake.quote(params)
        except Exception as exc:  # a bug here must show up as a 500, not a hang
            return 500, {"name": "INTERNAL_SERVER_ERROR", "message": type(exc).__name__}, {}
        if failure is not None and failure.mode == "mutate" and failure.mutate is not None:
            replaced = failure.mutate(body)
            body = body if replaced is None else replaced
        return status, body, {}

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass
