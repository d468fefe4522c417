"""A dev market with many pools, shared by the latency and round-trip benchmarks.

The dev market has 12 pools (8 Uniswap V2 on two deployments, 4 V3). For larger markets, fresh
``DevToken``s ``X0, X1, ...`` get V2 pairs with real liquidity against USDC and WETH on both V2
deployments (four pools per token, the same price on both venues, so they add work to every
read and scan but no arbitrage). For 10 pools, two of the three UNI/WETH pools are left out.

``bench_config`` turns the market into the ``test`` environment's ``AppConfig`` with exactly the
requested pools; the extra tokens are added to the tokens and the risk allowlist.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from dexpilot.chain.anvil import AnvilProcess
from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.deployer import DEPLOY_GAS, DEPLOYER, FAR_DEADLINE, MAX_UINT256, Deployer
from dexpilot.chain.devnet import start_market
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator
from dexpilot.config import AppConfig, PoolConfig, TokenConfig
from dexpilot.execution.wallet import HotWallet
from dexpilot.market.pools import PoolKind
from dexpilot.trading.cycle import CycleStep, TradingRuntime, run_cycle
from settings.files import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# anvil's account #1 (wallet A on the dev chain): a public test key, dev chain only.
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
EXTRA_DEPTH_USD = Decimal(100_000)  # each side of each extra pool
WETH_USD = Decimal(3000)
# Left out, in this order, for markets smaller than the dev market's 12 pools.
DROPPABLE = [("sushiswap-v2", "UNI"), ("uniswap-v3", "UNI")]
GAP_VENUE, GAP_PAIR, GAP_FACTOR = "sushiswap-v2", "WETH/USDC", 1.02


@dataclass
class BenchMarket:
    anvil: AnvilProcess
    manifest: DevnetManifest
    client: RpcClient
    directory: Path
    extra_tokens: list[TokenConfig] = field(default_factory=list)
    extra_pools: list[PoolConfig] = field(default_factory=list)
    _snapshot: str | None = None

    @property
    def base_pools(self) -> list[PoolConfig]:
        return list(self.manifest.pools)

    def pools(self, count: int) -> list[PoolConfig]:
        """``count`` pools: the dev market's (less droppable ones) plus the first extras."""
        base = self.base_pools
        if count < len(base):
            drop = len(base) - count
            if drop > len(DROPPABLE):
                raise ValueError(f"at least {len(base) - len(DROPPABLE)} pools")
            for venue, symbol in DROPPABLE[:drop]:
                base = [p for p in base
                        if not (p.venue == venue and symbol in (p.token0, p.token1))]
            return base
        extra = count - len(base)
        if extra > len(self.extra_pools):
            raise ValueError(f"only {len(base) + len(self.extra_pools)} pools deployed")
        return base + self.extra_pools[:extra]

    # -- chain state ----------------------------------------------------------------------
    def save(self) -> None:
        """Remember the chain's current state (``restore`` goes back to it)."""
        self._snapshot = self.client.request("evm_snapshot")

    def restore(self) -> None:
        """Back to the saved state; it stays saved (anvil drops a snapshot once used)."""
        assert self._snapshot is not None, "save() first"
        if not self.client.request("evm_revert", [self._snapshot]):
            raise RuntimeError(f"evm_revert {self._snapshot} failed")
        self.save()

    def push_gap(self, factor: float = GAP_FACTOR) -> None:
        """One profitable gap: WETH ``factor`` dearer on sushiswap-v2 (a noise trader's swap)."""
        sim = MarketSimulator(self.client, self.manifest)
        reader = ChainReader(self.client, self.manifest.multicall,
                             expected_chain_id=self.manifest.chain_id)
        snap = next(s for s in reader.snapshot(self.manifest.pool_refs()).pools
                    if s.pool.venue == GAP_VENUE and s.pool.pair == GAP_PAIR)
        if not sim.push(snap, snap.price() * factor):
            raise RuntimeError("could not push the price")

    def close(self) -> None:
        self.client.close()
        self.anvil.stop()


@contextmanager
def bench_market(directory: Path, max_pools: int) -> Iterator[BenchMarket]:
    """Start the dev chain and deploy enough extra pools for ``max_pools`` in all."""
    anvil, manifest = start_market(directory, cache_dir=PROJECT_ROOT / ".devnet" / "cache")
    market = BenchMarket(anvil, manifest, RpcClient([manifest.rpc_url], timeout=30.0),
                         directory)
    try:
        deploy_extra_pools(market, max(0, max_pools - len(manifest.pools)))
        yield market
    finally:
        market.close()


def deploy_extra_pools(market: BenchMarket, count: int) -> None:
    """``count`` V2 pools with liquidity: X<i>/USDC then X<i>/WETH on each V2 deployment.

    Transactions are sent back to back and their receipts read in batches afterwards, so a
    200-pool market takes a few seconds.
    """
    if count <= 0:
        return
    deployer = Deployer(market.client)
    manifest = market.manifest
    tokens = {t.symbol: t for t in manifest.tokens}
    usdc, weth = tokens["USDC"], tokens["WETH"]
    v2 = [v for v in manifest.venues if v.kind.value == "uniswap_v2"]
    routers = {v.name: deployer.contract("UniswapV2Router02", str(v.router)) for v in v2}
    factories = {v.name: deployer.contract("UniswapV2Factory", str(v.factory)) for v in v2}
    sides = [(usdc, int(EXTRA_DEPTH_USD * 10**6)),
             (weth, int(EXTRA_DEPTH_USD / WETH_USD * 10**18))]
    per_token = len(sides) * len(v2)
    n_tokens = -(-count // per_token)

    art = load_artifact("DevToken")
    factory = market.client.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipts = _send_all(market.client, [
        (None, factory.constructor(f"Bench token {i}", f"X{i}", 18).data_in_transaction)
        for i in range(n_tokens)])
    new_tokens = [TokenConfig(symbol=f"X{i}", decimals=18,
                              address=to_checksum_address(r["contractAddress"]))
                  for i, r in enumerate(receipts)]
    token_contracts = [deployer.contract("DevToken", t.address) for t in new_tokens]
    amounts = [int(EXTRA_DEPTH_USD / Decimal(1 + i % 20) * 10**18) for i in range(n_tokens)]
    setup: list[tuple[str | None, str]] = []
    for contract, amount in zip(token_contracts, amounts, strict=True):
        setup.append((contract.address,
                      contract.encode_abi("mint", [DEPLOYER, amount * per_token])))
        setup += [(contract.address, contract.encode_abi("approve", [r.address, MAX_UINT256]))
                  for r in routers.values()]
    _send_all(market.client, setup)
    planned: list[tuple[str, TokenConfig, TokenConfig]] = []
    liquidity: list[tuple[str | None, str]] = []
    for token, amount in zip(new_tokens, amounts, strict=True):
        for quote, quote_amount in sides:
            for venue_config in v2:
                if len(planned) == count:
                    break
                router = routers[venue_config.name]
                planned.append((venue_config.name, token, quote))
                liquidity.append((router.address, router.encode_abi(
                    "addLiquidity", [token.address, quote.address, amount, quote_amount, 0, 0,
                                     DEPLOYER, FAR_DEADLINE])))
    _send_all(market.client, liquidity)
    pairs = market.client.batch([
        ("eth_call", [{"to": factories[venue].address,
                       "data": factories[venue].encode_abi("getPair",
                                                           [token.address, quote.address])},
                      "latest"])
        for venue, token, quote in planned])
    for (venue, token, quote), raw in zip(planned, pairs, strict=True):
        t0, t1 = sorted((token, quote), key=lambda t: int(t.address, 16))
        market.extra_pools.append(PoolConfig(
            venue=venue, kind=PoolKind.V2, address=to_checksum_address("0x" + raw[-40:]),
            token0=t0.symbol, token1=t1.symbol, fee_ppm=3000))
    market.extra_tokens.extend(new_tokens)


def _send_all(client: RpcClient, txs: Sequence[tuple[str | None, str]],
              chunk: int = 100) -> list[dict[str, Any]]:
    """Send ``(to, data)`` transactions from the deployer one after the other without
    waiting for each receipt (anvil mines each on arrival), then check every receipt."""
    hashes = []
    for to, data in txs:
        tx: dict[str, Any] = {"from": DEPLOYER, "data": data, "gas": hex(DEPLOY_GAS)}
        if to is not None:
            tx["to"] = to
        hashes.append(client.request("eth_sendTransaction", [tx]))
    receipts: list[dict[str, Any]] = []
    for start in range(0, len(hashes), chunk):
        part = hashes[start:start + chunk]
        deadline = time.monotonic() + 30
        while True:
            got = client.batch([("eth_getTransactionReceipt", [h]) for h in part])
            if all(r is not None for r in got) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for tx_hash, receipt in zip(part, got, strict=True):
            if receipt is None or int(receipt["status"], 16) != 1:
                raise RuntimeError(f"bench setup transaction {tx_hash} failed: {receipt}")
        receipts += got
    return receipts


def bench_config(market: BenchMarket, pool_count: int, ledger_url: str) -> AppConfig:
    """The ``test`` environment on this market with ``pool_count`` pools and its own ledger."""
    manifest_path = market.directory / "manifest.json"
    market.manifest.write(manifest_path)
    os.environ["DEXPILOT_MANIFEST"] = str(manifest_path)
    os.environ["DEXPILOT_LEDGER_URL"] = ledger_url
    os.environ.setdefault("DEXPILOT_HOT_WALLET_KEY", ANVIL_KEY_1)
    base = load_config("test")
    pools = market.pools(pool_count)
    used = {s for p in pools for s in (p.token0, p.token1)}
    tokens = list(base.tokens) + [t for t in market.extra_tokens if t.symbol in used]
    data = base.model_dump()
    data["tokens"] = [t.model_dump() for t in tokens]
    data["pools"] = [p.model_dump() for p in pools]
    data["risk"]["token_allowlist"] = [t.symbol for t in tokens]
    data["ledger"]["url"] = ledger_url
    return AppConfig.model_validate(data)


def quiet_market(market: BenchMarket, ledger_dir: Path) -> int:
    """Trade away the dev market's built-in spread (cycles until one plans no order), so a
    pushed gap is the only opportunity; returns how many cycles traded."""
    config = bench_config(market, len(market.base_pools), f"sqlite:///{ledger_dir / 'q.db'}")
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        for i in range(20):
            if not run_cycle(rt, f"quiet{i}").intents:
                return i
    finally:
        rt.close()
    raise RuntimeError("the dev market's spread never closed")


@dataclass
class StepProbe:
    """Wraps a cycle's step runner and the executor's checkpoint hook to mark, per step, when
    it started and ended (``perf_counter``) and the RPC client's round-trip count at both; the
    first time each executor checkpoint is reached is marked the same way. The runtime is
    attached explicitly or taken from the first step's arguments."""

    client: RpcClient | None = None
    marks: dict[str, float] = field(default_factory=dict)
    trips: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget the marks and the runtime (the next step's runtime is attached)."""
        self.client = None
        self.marks.clear()
        self.trips.clear()

    def _mark(self, name: str) -> None:
        if name not in self.marks:
            self.marks[name] = time.perf_counter()
            self.trips[name] = self.client.round_trips if self.client is not None else 0

    def runner(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        def run_step(step: CycleStep, *args: Any) -> Any:
            if self.client is None and args and isinstance(args[0], TradingRuntime):
                self.attach(args[0])  # every step takes the runtime first
            self._mark(step.name)
            try:
                return inner(step, *args)
            finally:
                self._mark(f"{step.name}:end")
        return run_step

    def checkpoint(self, name: str) -> None:
        self._mark(name)

    def attach(self, rt: TradingRuntime) -> None:
        self.client = rt.client
        rt.executor.checkpoint = self.checkpoint


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]
