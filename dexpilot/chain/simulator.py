"""Market simulator for the dev chain: noise traders that make prices move and diverge.

Every token follows its own random walk in USD (USDC pinned at 1), so pair prices stay
triangularly consistent in the reference; each pool is then pushed part of the way toward the
reference times its own small noise. Pools on different venues therefore drift apart and are
pulled back, like a real market with arbitrage opportunities that come and go.

The noise traders are anvil dev accounts that exist only for this; their swaps go through
the real routers, and each is bounded by a minimum output like any honest trader's.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import VenueKind
from dexpilot.market.pools import MarketSnapshot, PoolSnapshot

V2_SWAP = function_signature_to_4byte_selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
)
V3_SWAP = function_signature_to_4byte_selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
FAR_DEADLINE = 2**40
SWAP_GAS_LIMIT = 1_000_000


@dataclass(frozen=True)
class SimulatorParams:
    seed: int = 7
    step_volatility: float = 0.002  # per-step log-price stdev of each token in USD
    venue_noise: float = 0.003  # per-pool deviation around the reference
    pull: tuple[float, float] = (0.3, 0.9)  # how far toward its target a pool is pushed
    step_seconds: int | None = None  # advance chain time per step (for longer histories)


@dataclass(frozen=True)
class StepReport:
    step: int
    block: int
    swaps: int


class MarketSimulator:
    def __init__(
        self, client: RpcClient, manifest: DevnetManifest, params: SimulatorParams | None = None
    ) -> None:
        self.client = client
        self.manifest = manifest
        self.params = params or SimulatorParams()
        self.rng = random.Random(self.params.seed)
        self.tokens = {t.symbol: t.token() for t in manifest.tokens}
        self.pools = manifest.pool_refs()
        self.routers = {v.name: (v.kind, v.router) for v in manifest.venues}
        self.reader = ChainReader(client, manifest.multicall, expected_chain_id=manifest.chain_id)
        self.traders = manifest.noise_traders or [manifest.deployer]
        self._usd: dict[str, float] = {}
        self._steps = 0

    def reference_prices(self, snapshot: MarketSnapshot) -> dict[str, float]:
        """USD prices, seeded once from the first pool quoted directly in USDC."""
        if not self._usd:
            self._usd = {"USDC": 1.0}
            for snap in snapshot.pools:
                for token, other in ((snap.pool.token0, snap.pool.token1),
                                     (snap.pool.token1, snap.pool.token0)):
                    if other.symbol == "USDC" and token.symbol not in self._usd:
                        self._usd[token.symbol] = snap.price_of(token)
            for snap in snapshot.pools:  # tokens only quoted against WETH
                for token, other in ((snap.pool.token0, snap.pool.token1),
                                     (snap.pool.token1, snap.pool.token0)):
                    if token.symbol not in self._usd and other.symbol in self._usd:
                        self._usd[token.symbol] = snap.price_of(token) * self._usd[other.symbol]
        return self._usd

    def step(self) -> StepReport:
        if self.params.step_seconds:
            self.client.request("evm_increaseTime", [self.params.step_seconds])
        snapshot = self.reader.snapshot(self.pools)
        usd = self.reference_prices(snapshot)
        for symbol in usd:
            if symbol != "USDC":
                usd[symbol] *= math.exp(self.rng.gauss(0.0, self.params.step_volatility))
        swaps = 0
        for snap in snapshot.pools:
            t0, t1 = snap.pool.token0, snap.pool.token1
            target = usd[t0.symbol] / usd[t1.symbol]
            target *= math.exp(self.rng.gauss(0.0, self.params.venue_noise))
            if self.push(snap, target, self.rng.uniform(*self.params.pull)):
                swaps += 1
        self._steps += 1
        return StepReport(self._steps, snapshot.block_number, swaps)

    def run(
        self,
        *,
        seconds: float | None = None,
        steps: int | None = None,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> int:
        if seconds is None and steps is None:
            raise ValueError("give seconds or steps")
        deadline = time.monotonic() + seconds if seconds is not None else math.inf
        done = 0
        while time.monotonic() < deadline and (steps is None or done < steps):
            report = self.step()
            done += 1
            if on_step:
                on_step(report)
        return done

    def push(self, snap: PoolSnapshot, target_price: float, pull: float = 1.0) -> bool:
        """Swap so the pool's price moves ``pull`` of the way (in log terms) toward
        ``target_price`` (token0 in token1, decimals applied)."""
        pool = snap.pool
        r0, r1 = snap.reserves()
        x, y = float(r0), float(r1)
        if x <= 0 or y <= 0:
            return False
        scale = 10 ** (pool.token0.decimals - pool.token1.decimals)
        target_raw = target_price / scale  # token1 raw per token0 raw
        goal = math.exp(math.log(y / x) + pull * (math.log(target_raw) - math.log(y / x)))
        k = x * y
        fee = pool.fee_ppm / 1_000_000
        new_x = math.sqrt(k / goal)
        if new_x > x:
            token_in, token_out, amount_in = pool.token0, pool.token1, (new_x - x) / (1 - fee)
            expected_out = y - k / (x + amount_in * (1 - fee))
        else:
            new_y = math.sqrt(k * goal)
            token_in, token_out, amount_in = pool.token1, pool.token0, (new_y - y) / (1 - fee)
            expected_out = x - k / (y + amount_in * (1 - fee))
        raw_in = int(amount_in)
        if raw_in <= 0 or expected_out < 1:
            return False
        min_out = int(expected_out * 0.97)
        trader = self.rng.choice(self.traders)
        kind, router = self.routers[pool.venue]
        if kind is VenueKind.UNISWAP_V2:
            data = V2_SWAP + encode(
                ["uint256", "uint256", "address[]", "address", "uint256"],
                [raw_in, min_out, [token_in.address, token_out.address], trader, FAR_DEADLINE],
            )
        else:
            data = V3_SWAP + encode(
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                [(token_in.address, token_out.address, pool.fee_ppm, trader, FAR_DEADLINE,
                  raw_in, min_out, 0)],
            )
        tx_hash = self.client.request(
            # A fixed limit: anvil's estimate has come out short for some of these swaps.
            "eth_sendTransaction", [{"from": trader, "to": router, "data": "0x" + data.hex(),
                                     "gas": hex(SWAP_GAS_LIMIT)}]
        )
        receipt = self.client.wait_for_receipt(tx_hash, timeout=30.0, poll_interval=0.002)
        return int(receipt["status"], 16) == 1

