"""Start and stop anvil, the local dev chain, from the pinned npm package."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from dexpilot.errors import SystemFault

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ANVIL_BIN = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# anvil's well-known dev mnemonic ("test test ... junk"): its keys are public test keys.
DEV_CHAIN_ID = 31337


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AnvilProcess:
    pid: int
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        *,
        port: int | None = None,
        chain_id: int = DEV_CHAIN_ID,
        load_state: Path | None = None,
        dump_state: Path | None = None,
        block_time: float | None = None,
        no_mining: bool = False,
        genesis_timestamp: int | None = None,
        log_file: Path | None = None,
        detach: bool = False,
        timeout: float = 15.0,
    ) -> AnvilProcess:
        """Start anvil on a loopback port and wait until it answers.

        ``detach`` puts it in its own session so it outlives the command that started it
        (``dexpilot devnet up``); otherwise it is a child that ``stop()`` ends.
        """
        if not ANVIL_BIN.exists():
            raise SystemFault(f"anvil not found at {ANVIL_BIN}: run `npm ci` (make does it)")
        port = port or free_port()
        args = [
            str(ANVIL_BIN), "--host", "127.0.0.1", "--port", str(port),
            "--chain-id", str(chain_id), "--accounts", "10", "--balance", "100000",
            "--silent",
        ]
        if load_state is not None:
            args += ["--load-state", str(load_state)]
        if dump_state is not None:
            args += ["--dump-state", str(dump_state)]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        if no_mining:
            args += ["--no-mining"]
        if genesis_timestamp is not None:
            args += ["--timestamp", str(genesis_timestamp)]
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        finally:
            if log_file:
                out.close()  # type: ignore[union-attr]
        anvil = cls(pid=proc.pid, port=port, process=proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemFault(f"anvil exited with code {proc.returncode} on port {port}")
            if anvil.is_answering():
                return anvil
            time.sleep(0.02)
        anvil.stop()
        raise SystemFault(f"anvil did not answer on port {port} within {timeout} s")

    def is_answering(self) -> bool:
        try:
            r = httpx.post(
                self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=1.0,
            )
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def is_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)
        if self.is_alive():
            os.kill(self.pid, signal.SIGKILL)
