"""The dev chain: the deployed market is real Uniswap, quotes match swaps, reads are batched."""

from __future__ import annotations

import json
from pathlib import Path

from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.deployer import DEPLOYER, Deployer
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator, SimulatorParams
from dexpilot.market.pools import PoolKind, PoolRef
from dexpilot.market.spread import cross_venue_spreads
from dexpilot.money import Token

FAR = 2**40


def _tokens(devnet: DevnetManifest) -> dict[str, Token]:
    return {t.symbol: t.token() for t in devnet.tokens}


def _balance(client: RpcClient, token: Token, owner: str) -> int:
    erc20 = client.w3.eth.contract(address=token.address, abi=load_artifact("ERC20").abi)
    return int(erc20.functions.balanceOf(owner).call())


def _send(client: RpcClient, sender: str, to: str, data: str) -> dict[str, object]:
    tx_hash = client.request("eth_sendTransaction",
                             [{"from": sender, "to": to, "data": data, "gas": hex(2_000_000)}])
    receipt = client.wait_for_receipt(tx_hash, timeout=10)
    assert int(str(receipt["status"]), 16) == 1, receipt
    return receipt


def test_market_has_real_world_decimals_and_two_v2_venues(devnet: DevnetManifest) -> None:
    decimals = {t.symbol: t.decimals for t in devnet.tokens}
    assert decimals == {"WETH": 18, "USDC": 6, "WBTC": 8, "UNI": 18}
    kinds = sorted(v.kind.value for v in devnet.venues)
    assert kinds == ["uniswap_v2", "uniswap_v2", "uniswap_v3"]
    fee_tiers = {p.fee_ppm for p in devnet.pools if p.kind is PoolKind.V3}
    assert fee_tiers == {500, 3000}
    assert devnet.hot_wallet != devnet.cold_wallet


def test_on_chain_token_metadata_matches_manifest(chain: RpcClient, devnet: DevnetManifest) -> None:
    abi = load_artifact("DevToken").abi
    for t in devnet.tokens:
        if t.symbol == "WETH":
            continue
        c = chain.w3.eth.contract(address=t.address, abi=abi)
        assert c.functions.symbol().call() == t.symbol
        assert c.functions.decimals().call() == t.decimals


def test_v2_venues_are_seeded_at_different_prices(chain: RpcClient, devnet: DevnetManifest) -> None:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    snap = reader.snapshot(devnet.pool_refs())
    weth_usdc = {s.pool.venue: s.price() for s in snap.pools
                 if s.pool.pair == "WETH/USDC" and s.pool.kind is PoolKind.V2}
    assert 2900 < weth_usdc["uniswap-v2"] < 3100
    assert weth_usdc["uniswap-v2"] != weth_usdc["sushiswap-v2"]
    assert any(s.pair == "WETH/USDC" and s.gross_bps > 0 for s in cross_venue_spreads(snap.pools))


def test_quote_then_swap_on_each_v2_venue(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = _tokens(devnet)
    usdc, weth = tokens["USDC"], tokens["WETH"]
    wallet = devnet.hot_wallet
    amount_in = 1_000 * 10**6  # 1,000 USDC
    router_abi = load_artifact("UniswapV2Router02").abi
    erc20_abi = load_artifact("ERC20").abi
    for venue in (v for v in devnet.venues if v.kind.value == "uniswap_v2"):
        assert venue.router is not None
        router = chain.w3.eth.contract(address=venue.router, abi=router_abi)
        quoted = router.functions.getAmountsOut(amount_in, [usdc.address, weth.address]).call()[-1]
        assert 0.30 * 10**18 < quoted < 0.36 * 10**18  # ~1000/3000 WETH less 0.3 %
        token = chain.w3.eth.contract(address=usdc.address, abi=erc20_abi)
        _send(chain, wallet, usdc.address, token.encode_abi("approve", [venue.router, amount_in]))
        usdc_before, weth_before = _balance(chain, usdc, wallet), _balance(chain, weth, wallet)
        data = router.encode_abi("swapExactTokensForTokens",
                                 [amount_in, quoted, [usdc.address, weth.address], wallet, FAR])
        _send(chain, wallet, venue.router, data)
        assert _balance(chain, usdc, wallet) == usdc_before - amount_in
        assert _balance(chain, weth, wallet) == weth_before + quoted


def test_quote_then_swap_on_v3(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = _tokens(devnet)
    weth, usdc = tokens["WETH"], tokens["USDC"]
    wallet = devnet.hot_wallet
    v3 = next(v for v in devnet.venues if v.kind.value == "uniswap_v3")
    assert v3.quoter is not None and v3.router is not None
    amount_in = 10**18  # 1 WETH
    quoter = chain.w3.eth.contract(address=v3.quoter, abi=load_artifact("QuoterV2").abi)
    for fee in (500, 3000):
        quoted = quoter.functions.quoteExactInputSingle(
            (weth.address, usdc.address, amount_in, fee, 0)).call()[0]
        assert 2800 * 10**6 < quoted < 3200 * 10**6
        weth_c = chain.w3.eth.contract(address=weth.address, abi=load_artifact("WETH9").abi)
        _send(chain, wallet, weth.address, weth_c.encode_abi("approve", [v3.router, amount_in]))
        before = _balance(chain, usdc, wallet)
        router = chain.w3.eth.contract(address=v3.router, abi=load_artifact("SwapRouter").abi)
        data = router.encode_abi("exactInputSingle", [(weth.address, usdc.address, fee, wallet,
                                                       FAR, amount_in, quoted, 0)])
        _send(chain, wallet, v3.router, data)
        assert _balance(chain, usdc, wallet) == before + quoted


def test_swap_below_min_out_reverts(chain: RpcClient, devnet: DevnetManifest) -> None:
    """The bound protects: asking for one unit more than the quote reverts the swap."""
    tokens = _tokens(devnet)
    usdc, weth = tokens["USDC"], tokens["WETH"]
    venue = next(v for v in devnet.venues if v.name == "uniswap-v2")
    assert venue.router is not None
    router = chain.w3.eth.contract(address=venue.router, abi=load_artifact("UniswapV2Router02").abi)
    amount_in = 10**6
    quoted = router.functions.getAmountsOut(amount_in, [usdc.address, weth.address]).call()[-1]
    data = router.encode_abi("swapExactTokensForTokens",
                             [amount_in, quoted + 1, [usdc.address, weth.address],
                              devnet.hot_wallet, FAR])
    erc20 = chain.w3.eth.contract(address=usdc.address, abi=load_artifact("ERC20").abi)
    _send(chain, devnet.hot_wallet, usdc.address, erc20.encode_abi("approve",
                                                                    [venue.router, amount_in]))
    tx_hash = chain.request("eth_sendTransaction", [{"from": devnet.hot_wallet, "to": venue.router,
                                                     "data": data, "gas": hex(500_000)}])
    assert int(chain.wait_for_receipt(tx_hash, timeout=10)["status"], 16) == 0


def test_snapshot_reads_balances_and_block(chain: RpcClient, devnet: DevnetManifest) -> None:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    tokens = list(_tokens(devnet).values())
    snap = reader.snapshot(devnet.pool_refs(), tokens, [devnet.hot_wallet, devnet.cold_wallet])
    assert snap.block_number == int(chain.request("eth_blockNumber"), 16)
    for token in tokens:
        assert snap.balance(devnet.hot_wallet, token) == _balance(chain, token, devnet.hot_wallet)
    assert snap.native_balances[devnet.hot_wallet] == int(
        chain.request("eth_getBalance", [devnet.hot_wallet, "latest"]), 16)
    pool = next(p for p in devnet.pool_refs() if p.kind is PoolKind.V2)
    pair = chain.w3.eth.contract(address=pool.address, abi=load_artifact("UniswapV2Pair").abi)
    r0, r1, _ = pair.functions.getReserves().call()
    state = snap.pool(pool.address).state
    assert (state.reserve0, state.reserve1) == (r0, r1)  # type: ignore[union-attr]


def _many_v2_pools(chain: RpcClient, devnet: DevnetManifest, count: int) -> list[PoolRef]:
    """Create ``count`` distinct V2 pairs (no liquidity needed to read their reserves)."""
    deployer = Deployer(chain)
    new_tokens = [deployer.deploy("DevToken", f"Bench {i}", f"B{i}", 18) for i in range(15)]
    refs: list[PoolRef] = []
    factories = [v.factory for v in devnet.venues if v.kind.value == "uniswap_v2"]
    for factory_address in factories:
        assert factory_address is not None
        factory = deployer.contract("UniswapV2Factory", factory_address)
        for i, a in enumerate(new_tokens):
            for b in new_tokens[i + 1:]:
                if len(refs) == count:
                    return refs
                deployer.call_tx(DEPLOYER, factory, "createPair", a.address, b.address)
                pair = factory.functions.getPair(a.address, b.address).call()
                ta, tb = Token(f"A{i}", a.address, 18), Token("B", b.address, 18)
                t0, t1 = sorted((ta, tb), key=lambda t: int(t.address, 16))
                refs.append(PoolRef("bench", PoolKind.V2, pair, t0, t1, 3000))
    raise AssertionError(f"could only create {len(refs)} pools")


def test_snapshot_of_200_pools_costs_the_same_round_trips_as_10(
    chain: RpcClient, devnet: DevnetManifest
) -> None:
    pools = _many_v2_pools(chain, devnet, 200)
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id,
                         max_calls_per_chunk=64)
    trips = {}
    for n in (10, 200):
        before = chain.round_trips
        snap = reader.snapshot(pools[:n], [], [devnet.hot_wallet])
        trips[n] = chain.round_trips - before
        assert len(snap.pools) == n
        assert {s.pool.address for s in snap.pools} == {p.address for p in pools[:n]}
    assert trips[10] == trips[200] == 1


def test_simulator_moves_prices_on_every_venue(chain: RpcClient, devnet: DevnetManifest) -> None:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    before = {s.pool.address: s.price() for s in reader.snapshot(devnet.pool_refs()).pools}
    sim = MarketSimulator(chain, devnet, SimulatorParams(seed=3))
    assert sim.run(steps=5) == 5
    after = {s.pool.address: s.price() for s in reader.snapshot(devnet.pool_refs()).pools}
    moved = {a for a in before if abs(after[a] / before[a] - 1) > 1e-6}
    assert moved == set(before), "every pool should have traded"
    assert all(abs(after[a] / before[a] - 1) < 0.1 for a in before), "no wild jumps"


def test_manifest_round_trip(tmp_path: Path, devnet: DevnetManifest) -> None:
    path = tmp_path / "m.json"
    devnet.write(path)
    assert DevnetManifest.read(path) == devnet
    assert json.loads(path.read_text())["chain_id"] == 31337

