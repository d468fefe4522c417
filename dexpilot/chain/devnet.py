"""The dev chain: anvil with the dev market deployed, started in ~0.1 s from a cached state.

The first start deploys the market on a throw-away anvil (its genesis dated
``MARKET_AGE_S`` back, so the pools' oracles have history) that dumps its state on exit; that
state and its manifest are cached under ``.devnet/cache`` keyed by a fingerprint of every
build file and of the deploy code, so any change redeploys and nothing stale is ever loaded.
Later starts load the state (``--load-state``) on a fresh free port, so each start is a new
chain with the same early blocks: its manifest carries a random ``instance`` id, which the dev
ledger records (``dexpilot.execution.ledger_audit.claim_dev_ledger``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dexpilot.chain import deployer as deployer_module
from dexpilot.chain.anvil import DEV_CHAIN_ID, PROJECT_ROOT, AnvilProcess
from dexpilot.chain.artifacts import artifact_fingerprint
from dexpilot.chain.deployer import MARKET_AGE_S, Deployer
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import SystemFault


def devnet_dir() -> Path:
    return Path(os.environ.get("DEXPILOT_DEVNET_DIR", PROJECT_ROOT / ".devnet"))


def market_fingerprint() -> str:
    digest = hashlib.sha256(artifact_fingerprint().encode())
    digest.update(Path(deployer_module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CachedMarket:
    state: Path
    manifest: DevnetManifest


def cached_market(cache_dir: Path | None = None) -> CachedMarket:
    """The deployed dev market's state file and manifest, deploying it once if needed."""
    cache_dir = cache_dir or devnet_dir() / "cache"
    fingerprint = market_fingerprint()
    state = cache_dir / f"state-{fingerprint}.json"
    manifest_path = cache_dir / f"manifest-{fingerprint}.json"
    if state.exists() and manifest_path.exists():
        return CachedMarket(state, DevnetManifest.read(manifest_path))
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"state-{fingerprint}.partial.json"
    partial.unlink(missing_ok=True)
    anvil = AnvilProcess.start(dump_state=partial,
                               genesis_timestamp=int(time.time()) - MARKET_AGE_S)
    try:
        with RpcClient([anvil.url]) as client:
            manifest = Deployer(client).deploy_market(DEV_CHAIN_ID, anvil.url, fingerprint)
    finally:
        anvil.stop()  # anvil writes --dump-state on a clean exit
    if not partial.exists():
        raise SystemFault(f"anvil did not write its state to {partial}")
    partial.replace(state)
    manifest.write(manifest_path)
    return CachedMarket(state, manifest)


def start_market(
    directory: Path | None = None,
    *,
    cache_dir: Path | None = None,
    detach: bool = False,
    block_time: float | None = None,
) -> tuple[AnvilProcess, DevnetManifest]:
    """Start anvil with the dev market on a free port; write its manifest into ``directory``."""
    directory = directory or devnet_dir()
    directory.mkdir(parents=True, exist_ok=True)
    market = cached_market(cache_dir or directory / "cache")
    anvil = AnvilProcess.start(load_state=market.state, detach=detach, block_time=block_time,
                               log_file=directory / "anvil.log")
    # The cached state's latest block is as old as the cache: mine one now so "latest block
    # time + N" deadlines start from the present.
    with RpcClient([anvil.url]) as client:
        client.request("evm_mine")
    manifest = market.manifest.model_copy(update={"rpc_url": anvil.url,
                                                  "instance": uuid.uuid4().hex})
    manifest.write(directory / "manifest.json")
    return anvil, manifest


# -- the long-lived dev chain behind `dexpilot devnet up|down|status` --------------------


def _pid_file(directory: Path) -> Path:
    return directory / "anvil.json"


def running(directory: Path | None = None) -> tuple[AnvilProcess, DevnetManifest] | None:
    directory = directory or devnet_dir()
    pid_file = _pid_file(directory)
    if not pid_file.exists():
        return None
    info = json.loads(pid_file.read_text())
    anvil = AnvilProcess(pid=info["pid"], port=info["port"])
    if not (anvil.is_alive() and anvil.is_answering()):
        return None
    return anvil, DevnetManifest.read(directory / "manifest.json")


def up(directory: Path | None = None) -> tuple[DevnetManifest, bool]:
    """Make sure the dev chain runs; returns its manifest and whether it was started now."""
    directory = directory or devnet_dir()
    current = running(directory)
    if current is not None and current[1].fingerprint == market_fingerprint():
        return current[1], False
    if current is not None:  # started from an older build of the market: replace it
        down(directory)
    anvil, manifest = start_market(directory, detach=True)
    _pid_file(directory).write_text(json.dumps({"pid": anvil.pid, "port": anvil.port}))
    return manifest, True


def down(directory: Path | None = None) -> bool:
    directory = directory or devnet_dir()
    pid_file = _pid_file(directory)
    current = running(directory)
    pid_file.unlink(missing_ok=True)
    if current is None:
        return False
    current[0].stop()
    return True
