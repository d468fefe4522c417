"""The RPC client maps every failure onto an error kind and switches endpoints on request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dexpilot.chain.anvil import free_port
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError, NetworkError, SystemFault


class _Misbehaving(BaseHTTPRequestHandler):
    """An endpoint that answers however the test tells it to."""

    behaviour = "500"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        kind = type(self).behaviour
        if kind == "429":
            self.send_response(429)
            self.send_header("Retry-After", "3")
            self.end_headers()
        elif kind == "500":
            self.send_response(503)
            self.end_headers()
        elif kind == "garbage":
            self._reply(b"<html>not json")
        elif kind == "rpc-error":
            self._reply(json.dumps({"jsonrpc": "2.0", "id": 1,
                                    "error": {"code": -32000, "message": "boom"}}).encode())

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_endpoint() -> Iterator[tuple[str, type[_Misbehaving]]]:
    handler = type("Handler", (_Misbehaving,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [("500", NetworkError), ("429", NetworkError), ("garbage", ApiError),
     ("rpc-error", ApiError)],
)
def test_failures_have_kinds(
    bad_endpoint: tuple[str, type[_Misbehaving]], behaviour: str, kind: type[Exception]
) -> None:
    url, handler = bad_endpoint
    handler.behaviour = behaviour
    with RpcClient([url], timeout=2) as client, pytest.raises(kind) as info:
        client.request("eth_blockNumber")
    assert url in str(info.value)
    if behaviour == "429":
        assert info.value.retry_after == 3.0  # type: ignore[attr-defined]


def test_connection_refused_is_a_network_error() -> None:
    with RpcClient([f"http://127.0.0.1:{free_port()}"], timeout=1) as client, \
            pytest.raises(NetworkError):
        client.chain_id()


def test_switch_moves_to_the_next_endpoint(devnet: DevnetManifest) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with RpcClient([dead, devnet.rpc_url], timeout=1) as client:
        with pytest.raises(NetworkError):
            client.chain_id()
        assert client.switch() == devnet.rpc_url
        assert client.chain_id() == devnet.chain_id
        assert client.switch() == dead  # wraps around


def test_batch_is_one_round_trip(devnet: DevnetManifest) -> None:
    with RpcClient([devnet.rpc_url]) as client:
        results = client.batch([("eth_chainId", []), ("eth_blockNumber", []),
                                ("eth_getBalance", [devnet.hot_wallet, "latest"])])
        assert client.round_trips == 1
        assert int(results[0], 16) == devnet.chain_id
        assert int(results[2], 16) > 0


def test_web3_helpers_share_the_client_and_add_no_chain_id_calls(devnet: DevnetManifest) -> None:
    with RpcClient([devnet.rpc_url]) as client:
        client.w3.eth.get_balance(devnet.hot_wallet)
        client.w3.eth.get_block("latest")
        assert client.round_trips == 2


def test_chain_id_mismatch_is_a_system_fault(devnet: DevnetManifest) -> None:
    with RpcClient([devnet.rpc_url]) as client:
        with pytest.raises(SystemFault, match="chain id"):
            client.verify_chain_id(1)
        reader = ChainReader(client, devnet.multicall, expected_chain_id=1)
        with pytest.raises(SystemFault, match="chain id changed"):
            reader.snapshot(devnet.pool_refs())
