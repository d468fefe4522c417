"""Contract ABIs and bytecode from the pinned npm build files, and the project's own contracts.

The Uniswap contracts are the real ones from Uniswap's npm packages, never re-compiled, so the
routers' init-code hashes match the factories they are deployed with. The dev token is compiled
on the machine that starts a dev chain (npm ``solc``, offline). The token-safety probe runs in
production too, where no compiler is installed: its build file is checked in
(``contracts/TokenProbe.json``, rebuilt by ``make contracts``; a test fails when it is stale).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot.errors import SystemFault

NODE_MODULES = PROJECT_ROOT / "node_modules"
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
_V3_CORE = "@uniswap/v3-core/artifacts/contracts"
_V3_PERIPHERY = "@uniswap/v3-periphery/artifacts/contracts"

ARTIFACT_PATHS: dict[str, str] = {
    "WETH9": "@uniswap/v2-periphery/build/WETH9.json",
    "UniswapV2Factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "UniswapV2Router02": "@uniswap/v2-periphery/build/UniswapV2Router02.json",
    "ERC20": "@uniswap/v2-core/build/ERC20.json",
    "UniswapV3Factory": f"{_V3_CORE}/UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": f"{_V3_CORE}/UniswapV3Pool.sol/UniswapV3Pool.json",
    "NonfungiblePositionManager":
        f"{_V3_PERIPHERY}/NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
    "SwapRouter": f"{_V3_PERIPHERY}/SwapRouter.sol/SwapRouter.json",
    "QuoterV2": f"{_V3_PERIPHERY}/lens/QuoterV2.sol/QuoterV2.json",
    "UniswapInterfaceMulticall":
        f"{_V3_PERIPHERY}/lens/UniswapInterfaceMulticall.sol/UniswapInterfaceMulticall.json",
}


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str = ""  # the runtime code (what a state override puts at an address)


CHECKED_IN = {"TokenProbe": CONTRACTS_DIR / "TokenProbe.json"}


@cache
def load_artifact(name: str) -> Artifact:
    if name == "DevToken":
        return compile_contract(CONTRACTS_DIR / "DevToken.sol", "DevToken")
    if name in CHECKED_IN:
        data = json.loads(CHECKED_IN[name].read_text())
        return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"])
    try:
        rel = ARTIFACT_PATHS[name]
    except KeyError:
        raise KeyError(f"unknown contract artifact {name!r}") from None
    path = NODE_MODULES / rel
    if not path.exists():
        raise SystemFault(f"{path} missing: run `npm ci` (make does it)")
    data = json.loads(path.read_text())
    bytecode = data["bytecode"]
    if isinstance(bytecode, dict):
        bytecode = bytecode["object"]
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return Artifact(name, data["abi"], bytecode)


def artifact_fingerprint() -> str:
    """Changes whenever any build file the dev chain deploys changes."""
    digest = hashlib.sha256()
    for name in sorted(ARTIFACT_PATHS):
        digest.update((NODE_MODULES / ARTIFACT_PATHS[name]).read_bytes())
    digest.update((CONTRACTS_DIR / "DevToken.sol").read_bytes())
    return digest.hexdigest()[:16]


def _build_dir() -> Path:
    return Path(os.environ.get("DEXPILOT_BUILD_DIR", PROJECT_ROOT / ".devnet" / "build"))


def compile_contract(source: Path, name: str) -> Artifact:
    """Compile contract ``name`` of ``source`` with the pinned npm ``solc`` (no download),
    cached in the build directory by the source's and the compile script's content."""
    script = CONTRACTS_DIR / "compile.js"
    digest = hashlib.sha256(source.read_bytes() + script.read_bytes() + name.encode())
    out = _build_dir() / f"{name}-{digest.hexdigest()[:16]}.json"
    if not out.exists():
        proc = subprocess.run(
            ["node", str(script), str(source), name],
            capture_output=True, text=True, env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            check=False,
        )
        if proc.returncode != 0:
            raise SystemFault(f"compiling {source.name} failed: {proc.stderr.strip()[:500]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(proc.stdout)
        tmp.replace(out)
    data = json.loads(out.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data.get("deployedBytecode", ""))
