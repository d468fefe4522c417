"""Deploys the dev market onto a fresh anvil: WETH9, tokens with real-world decimals, two
Uniswap V2 deployments at slightly different prices, Uniswap V3 with pools per fee tier, a
multicall contract, funded wallets and noise-trader accounts.

Everything is sent from anvil's unlocked dev accounts with ``eth_sendTransaction``; with
automine each transaction is mined before the call returns, so the deploy is sequential and
deterministic (same addresses every time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils import to_checksum_address
from web3.contract import Contract

from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import PoolConfig, TokenConfig, VenueConfig, VenueKind
from dexpilot.errors import SystemFault
from dexpilot.market.pools import PoolKind

# anvil's default accounts (mnemonic "test test ... junk"): public test keys, dev chain only.
ANVIL_ACCOUNTS = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
]
DEPLOYER = ANVIL_ACCOUNTS[0]
HOT_WALLET = ANVIL_ACCOUNTS[1]  # wallet A: its key comes from .env (a public test key)
COLD_WALLET = ANVIL_ACCOUNTS[9]  # wallet B: used as an address only
NOISE_TRADERS = ANVIL_ACCOUNTS[2:6]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_UINT256 = 2**256 - 1
DEPLOY_GAS = 15_000_000
FAR_DEADLINE = 2**40
MIN_TICK, MAX_TICK = -887272, 887272
TICK_SPACING = {500: 10, 3000: 60, 10000: 200}
# A fresh V3 pool remembers one observation, so any swap within the TWAP window leaves
# ``observe`` answering "OLD". Mainnet pools hold hundreds; the dev pools get room for this many.
V3_OBSERVATION_CARDINALITY = 100
# The dev market is deployed as if this long ago (anvil's genesis timestamp), so its pools
# have a price history longer than any TWAP window however recently the cache was built;
# a chain loaded from the cached state mines its next blocks at the present time.
MARKET_AGE_S = 86_400


@dataclass(frozen=True)
class DevTokenSpec:
    symbol: str
    name: str
    decimals: int
    usd_price: Decimal


# Reference prices in USD; every pool is seeded around them.
TOKENS = [
    DevTokenSpec("USDC", "USD Coin (dev)", 6, Decimal(1)),
    DevTokenSpec("WBTC", "Wrapped BTC (dev)", 8, Decimal(60000)),
    DevTokenSpec("UNI", "Uniswap (dev)", 18, Decimal(10)),
]
WETH_PRICE = Decimal(3000)

# (venue, pair, fee ppm, USD depth of each side, price skew vs reference).
V2_VENUES = {"uniswap-v2": Decimal("1.000"), "sushiswap-v2": Decimal("1.004")}
V2_PAIRS = [("WETH", "USDC", 3_000_000), ("WBTC", "USDC", 3_000_000),
            ("WBTC", "WETH", 2_000_000), ("UNI", "WETH", 1_000_000)]
V3_POOLS = [("WETH", "USDC", 500, 4_000_000, Decimal("0.998")),
            ("WETH", "USDC", 3000, 2_000_000, Decimal("1.002")),
            ("WBTC", "WETH", 3000, 2_000_000, Decimal("0.999")),
            ("UNI", "WETH", 3000, 1_000_000, Decimal("1.001"))]

# Balances handed out at deploy time, in whole tokens.
# Wallet A: 100,000 USDC of working cash and ~40,000 USDC of inventory in the other tokens,
# inside the dev and test exposure limits, so inventory arbitrage can trade from the start.
HOT_WALLET_FUNDS = {"WETH": Decimal(5), "USDC": Decimal(100_000), "WBTC": Decimal("0.25"),
                    "UNI": Decimal(1_000)}
HOT_WALLET_GAS_WEI = 5 * 10**18
TRADER_FUNDS = {"WETH": 2_000, "USDC": 6_000_000, "WBTC": 100, "UNI": 600_000}


class Deployer:
    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self.w3 = client.w3

    # -- transactions --------------------------------------------------------------------
    def send(self, sender: str, to: str | None, data: str = "0x", value: int = 0) -> dict[str, Any]:
        # A fixed generous gas limit: estimation is slower and has under-estimated the V3
        # position mint; unused gas costs nothing on the dev chain.
        tx: dict[str, Any] = {"from": sender, "data": data, "value": hex(value),
                              "gas": hex(DEPLOY_GAS)}
        if to is not None:
            tx["to"] = to
        tx_hash = self.client.request("eth_sendTransaction", [tx])
        receipt = self.client.wait_for_receipt(tx_hash, timeout=30.0)
        if int(receipt["status"], 16) != 1:
            raise SystemFault(f"dev chain deploy transaction {tx_hash} failed: {receipt}")
        return dict(receipt)

    def deploy(self, name: str, *args: Any) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        data = factory.constructor(*args).data_in_transaction
        receipt = self.send(DEPLOYER, None, data)
        return self.contract(name, receipt["contractAddress"])

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=load_artifact(name).abi
        )

    def call_tx(self, sender: str, contract: Contract, fn: str, *args: Any, value: int = 0) -> None:
        self.send(sender, contract.address, contract.encode_abi(fn, list(args)), value)

    # -- the market ----------------------------------------------------------------------
    def deploy_market(self, chain_id: int, rpc_url: str, fingerprint: str) -> DevnetManifest:
        weth = self.deploy("WETH9")
        tokens: dict[str, Contract] = {"WETH": weth}
        decimals = {"WETH": 18}
        usd = {"WETH": WETH_PRICE}
        for spec in TOKENS:
            tokens[spec.symbol] = self.deploy("DevToken", spec.name, spec.symbol, spec.decimals)
            decimals[spec.symbol] = spec.decimals
            usd[spec.symbol] = spec.usd_price
        multicall = self.deploy("UniswapInterfaceMulticall")

        def units(symbol: str, whole: Decimal | int) -> int:
            return int(Decimal(whole) * (Decimal(10) ** decimals[symbol]))

        def fund(account: str, holdings: dict[str, Decimal] | dict[str, int]) -> None:
            for symbol, whole in holdings.items():
                if symbol == "WETH":
                    self.call_tx(account, weth, "deposit", value=units("WETH", whole))
                else:
                    self.call_tx(DEPLOYER, tokens[symbol], "mint", account, units(symbol, whole))

        # The deployer provides all liquidity; give it plenty of everything.
        fund(DEPLOYER, {"WETH": 20_000, "USDC": 200_000_000, "WBTC": 2_000, "UNI": 20_000_000})

        venues: list[VenueConfig] = []
        pools: list[PoolConfig] = []
        for venue_name, skew in V2_VENUES.items():
            factory = self.deploy("UniswapV2Factory", DEPLOYER)
            router = self.deploy("UniswapV2Router02", factory.address, weth.address)
            venues.append(VenueConfig(name=venue_name, kind=VenueKind.UNISWAP_V2,
                                      factory=factory.address, router=router.address))
            for symbol in tokens:
                self.call_tx(DEPLOYER, tokens[symbol], "approve", router.address, MAX_UINT256)
            for base, quote, depth_usd in V2_PAIRS:
                price = usd[base] / usd[quote] * skew
                amount_base = units(base, Decimal(depth_usd) / usd[base])
                amount_quote = units(quote, Decimal(depth_usd) / usd[base] * price)
                self.call_tx(DEPLOYER, router, "addLiquidity", tokens[base].address,
                             tokens[quote].address, amount_base, amount_quote, 0, 0, DEPLOYER,
                             FAR_DEADLINE)
                pair = factory.functions.getPair(tokens[base].address, tokens[quote].address).call()
                pools.append(self._pool_config(venue_name, PoolKind.V2, pair, base, quote,
                                               tokens, 3000))

        v3_factory = self.deploy("UniswapV3Factory")
        npm = self.deploy("NonfungiblePositionManager", v3_factory.address, weth.address,
                          ZERO_ADDRESS)
        swap_router = self.deploy("SwapRouter", v3_factory.address, weth.address)
        quoter = self.deploy("QuoterV2", v3_factory.address, weth.address)
        venues.append(VenueConfig(name="uniswap-v3", kind=VenueKind.UNISWAP_V3,
                                  factory=v3_factory.address, router=swap_router.address,
                                  quoter=quoter.address, position_manager=npm.address))
        for symbol in tokens:
            self.call_tx(DEPLOYER, tokens[symbol], "approve", npm.address, MAX_UINT256)
        for base, quote, fee, depth_usd, skew in V3_POOLS:
            t0, t1 = sorted((base, quote), key=lambda s: int(tokens[s].address, 16))
            price = usd[base] / usd[quote] * skew
            amount_base = units(base, Decimal(depth_usd) / usd[base])
            amount_quote = units(quote, Decimal(depth_usd) / usd[base] * price)
            amount0, amount1 = (amount_base, amount_quote) if t0 == base else (amount_quote,
                                                                              amount_base)
            sqrt_price_x96 = math.isqrt(amount1 * 2**192 // amount0)
            self.call_tx(DEPLOYER, npm, "createAndInitializePoolIfNecessary",
                         tokens[t0].address, tokens[t1].address, fee, sqrt_price_x96)
            spacing = TICK_SPACING[fee]
            lower = -(-MIN_TICK // spacing) * spacing
            upper = (MAX_TICK // spacing) * spacing
            self.call_tx(DEPLOYER, npm, "mint", (
                tokens[t0].address, tokens[t1].address, fee, lower, upper, amount0, amount1,
                0, 0, DEPLOYER, FAR_DEADLINE))
            pool = v3_factory.functions.getPool(tokens[t0].address, tokens[t1].address, fee).call()
            self.call_tx(DEPLOYER, self.contract("UniswapV3Pool", pool),
                         "increaseObservationCardinalityNext", V3_OBSERVATION_CARDINALITY)
            pools.append(self._pool_config("uniswap-v3", PoolKind.V3, pool, base, quote, tokens,
                                           fee))

        fund(HOT_WALLET, HOT_WALLET_FUNDS)
        # A realistic gas float: anvil's default 10,000 ETH would hide a low-gas-balance bug.
        self.client.request("anvil_setBalance", [HOT_WALLET, hex(HOT_WALLET_GAS_WEI)])
        routers = [v.router for v in venues if v.router is not None]
        for trader in NOISE_TRADERS:
            fund(trader, TRADER_FUNDS)
            for symbol in tokens:
                for router_address in routers:
                    # Noise traders are the simulator's own accounts, never the bot's wallets.
                    self.call_tx(trader, tokens[symbol], "approve", router_address, MAX_UINT256)

        return DevnetManifest(
            chain_id=chain_id,
            rpc_url=rpc_url,
            fingerprint=fingerprint,
            multicall=multicall.address,
            weth="WETH",
            tokens=[TokenConfig(symbol=s, address=c.address, decimals=decimals[s])
                    for s, c in tokens.items()],
            venues=venues,
            pools=pools,
            hot_wallet=HOT_WALLET,
            cold_wallet=COLD_WALLET,
            deployer=DEPLOYER,
            noise_traders=list(NOISE_TRADERS),
        )

    def _pool_config(self, venue: str, kind: PoolKind, address: str, a: str, b: str,
                     tokens: dict[str, Contract], fee_ppm: int) -> PoolConfig:
        t0, t1 = sorted((a, b), key=lambda s: int(tokens[s].address, 16))
        return PoolConfig(venue=venue, kind=kind, address=to_checksum_address(address),
                          token0=t0, token1=t1, fee_ppm=fee_ppm)
