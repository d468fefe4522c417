"""nginx in front of the Prefect server: basic auth, UI and API through it, an open health
probe, Prefect's own auth string behind it, and a flow run driven entirely through the proxy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.chain.manifest import DevnetManifest
from tests.fixtures.ops import OpsServer

ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_without_credentials_the_proxy_answers_401(ops_server: OpsServer) -> None:
    for path in ("/", "/api/deployments/filter", "/api/admin/settings"):
        r = httpx.get(f"{ops_server.proxy_url}{path}", timeout=10)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Basic")
    wrong = httpx.get(f"{ops_server.proxy_url}/", auth=("dexpilot", "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_health_probe_is_open(ops_server: OpsServer) -> None:
    r = httpx.get(f"{ops_server.proxy_api_url}/health", timeout=10)
    assert r.status_code == 200 and r.json() is True


def test_the_server_itself_refuses_requests_without_the_auth_string(
        ops_server: OpsServer) -> None:
    r = httpx.post(f"{ops_server.api_url}/flows/filter", json={}, timeout=10)
    assert r.status_code == 401
    ok = httpx.post(f"{ops_server.api_url}/flows/filter", json={}, timeout=10,
                    headers=ops_server.auth_header())
    assert ok.status_code == 200


def test_ui_and_api_through_the_proxy_with_credentials(ops_server: OpsServer) -> None:
    auth = tuple(ops_server.auth_string.split(":", 1))
    ui = httpx.get(f"{ops_server.proxy_url}/", auth=auth, timeout=10)  # type: ignore[arg-type]
    assert ui.status_code == 200
    assert "<html" in ui.text.lower() and "prefect" in ui.text.lower()
    settings = httpx.get(f"{ops_server.proxy_url}/ui-settings", auth=auth,  # type: ignore[arg-type]
                         timeout=10)
    assert settings.status_code == 200
    assert settings.json()["api_url"] == ops_server.proxy_api_url
    api = httpx.post(f"{ops_server.proxy_api_url}/flows/filter", json={}, timeout=10,
                     auth=auth)  # type: ignore[arg-type]
    assert api.status_code == 200 and isinstance(api.json(), list)


def test_websocket_upgrade_reaches_the_event_stream(ops_server: OpsServer) -> None:
    # A raw upgrade handshake: nginx must forward Upgrade/Connection so Prefect answers 101
    # (with an auth string set, Prefect requires its "prefect" subprotocol and then an auth
    # message on the open socket, as its own clients send).
    import base64
    import os
    import socket

    host, port = ops_server.proxy_url.removeprefix("http://").split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/events/out HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: prefect\r\n"
        f"Authorization: {ops_server.auth_header()['Authorization']}\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        status = sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
    assert " 101 " in status, status


def test_flow_run_through_the_proxy_completes(deployed: OpsServer, devnet: DevnetManifest,
                                              tmp_path: Path) -> None:
    # The settings push, the worker and the flow run it starts talk to Prefect only through
    # nginx (PREFECT_API_URL = the proxy, PREFECT_API_AUTH_STRING = the credentials).
    devnet.write(tmp_path / "manifest.json")
    env = deployed.env(via_proxy=True, DEXPILOT_MANIFEST=str(tmp_path / "manifest.json"),
                       DEXPILOT_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
                       DEXPILOT_HOT_WALLET_KEY=ANVIL_KEY_1)
    pushed = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "dexpilot"), "settings",
                             "push", "test"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    deployed.start_worker("dexpilot-staging", "proxied-worker", via_proxy=True)
    try:
        auth = tuple(deployed.auth_string.split(":", 1))
        deployment = httpx.get(f"{deployed.proxy_api_url}/deployments/name/promote/ci",
                               auth=auth, timeout=10).json()  # type: ignore[arg-type]
        assert deployment["name"] == "ci"
        run_id = deployed.run_deployment("control/staging", {"action": "show"})
        run = deployed.wait_final(run_id, 120)
        assert run["state"]["type"] == "COMPLETED", (run["state"],
                                                     deployed.worker_log("proxied-worker")[-3000:])
        logs = httpx.post(f"{deployed.proxy_api_url}/logs/filter", auth=auth,  # type: ignore[arg-type]
                          json={"logs": {"flow_run_id": {"any_": [run_id]}}}, timeout=10).json()
        assert logs, "the flow run's logs did not reach the server through the proxy"
    finally:
        deployed.stop_workers()
