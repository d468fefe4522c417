"""Venue adapters on the real dev chain: exact V2 math, QuoterV2 batches, swaps that deliver the
quote, bounded swaps only, and the 0x v2 API client against a local stand-in server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import VenueConfig, VenueKind
from dexpilot.errors import ApiError, ConfigError, NetworkError
from dexpilot.market.pools import MarketSnapshot, V2State
from dexpilot.money import Token
from dexpilot.venues import v2_math
from dexpilot.venues.base import Quote, UnsupportedPair, Venue
from dexpilot.venues.registry import venues_from_manifest
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.uniswap_v3 import UniswapV3Venue, encode_path
from dexpilot.venues.zeroex import ZeroExVenue, parse_retry_after
from tests.fakes.zeroex_server import API_KEY_ENV, FakeZeroEx

GET_AMOUNTS_OUT = function_signature_to_4byte_selector("getAmountsOut(uint256,address[])")
BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
APPROVE = function_signature_to_4byte_selector("approve(address,uint256)")


# -- helpers shared with test_routing ----------------------------------------------------------


def tokens_of(devnet: DevnetManifest) -> dict[str, Token]:
    return {t.symbol: t.token() for t in devnet.tokens}


def snapshot_of(chain: RpcClient, devnet: DevnetManifest) -> MarketSnapshot:
    reader = ChainReader(chain, devnet.multicall, expected_chain_id=devnet.chain_id)
    return reader.snapshot(devnet.pool_refs())


def v2_states(snap: MarketSnapshot) -> dict[str, V2State]:
    return {s.pool.address: s.state for s in snap.pools if isinstance(s.state, V2State)}


def balance(chain: RpcClient, token: Token, owner: str) -> int:
    data = BALANCE_OF + encode(["address"], [owner])
    raw = chain.request("eth_call", [{"to": token.address, "data": "0x" + data.hex()}, "latest"])
    return int(raw, 16)


def send(chain: RpcClient, sender: str, to: str, data: str, gas: int = 1_000_000
         ) -> dict[str, Any]:
    tx_hash = chain.request("eth_sendTransaction",
                            [{"from": sender, "to": to, "data": data, "gas": hex(gas)}])
    return chain.wait_for_receipt(tx_hash, timeout=10)


def approve_exact(chain: RpcClient, owner: str, token: Token, spender: str, amount: int) -> None:
    data = "0x" + (APPROVE + encode(["address", "uint256"], [spender, amount])).hex()
    receipt = send(chain, owner, token.address, data, 100_000)
    assert int(receipt["status"], 16) == 1


def execute(chain: RpcClient, venue: Venue, quote: Quote, wallet: str,
            slippage_bps: int = 50) -> tuple[int, dict[str, Any]]:
    """Approve exactly ``amount_in`` to the venue's spender, build the bounded swap, send it
    from ``wallet``; returns how much ``token_out`` arrived and the receipt."""
    block = chain.request("eth_getBlockByNumber", ["latest", False])
    deadline = int(block["timestamp"], 16) + 300
    min_out = quote.amount_out * (10_000 - slippage_bps) // 10_000
    tx = venue.build_swap(quote, recipient=wallet, min_amount_out=min_out, deadline=deadline)
    assert tx.spender == venue.approval_spender(quote)
    approve_exact(chain, wallet, quote.token_in, tx.spender, quote.amount_in)
    in_before = balance(chain, quote.token_in, wallet)
    out_before = balance(chain, quote.token_out, wallet)
    receipt = send(chain, wallet, tx.to, tx.data, tx.gas_limit)
    assert int(receipt["status"], 16) == 1, receipt
    assert balance(chain, quote.token_in, wallet) == in_before - quote.amount_in
    return balance(chain, quote.token_out, wallet) - out_before, receipt


def router_amounts_out(chain: RpcClient, router: str, amount: int, path: list[Token]
                       ) -> list[int]:
    data = GET_AMOUNTS_OUT + encode(["uint256", "address[]"],
                                    [amount, [t.address for t in path]])
    raw = chain.request("eth_call", [{"to": router, "data": "0x" + data.hex()}, "latest"])
    (amounts,) = decode(["uint256[]"], bytes.fromhex(raw[2:]))
    return list(amounts)


def v2_venues(chain: RpcClient, devnet: DevnetManifest) -> list[UniswapV2Venue]:
    venues = venues_from_manifest(devnet, chain)
    return [v for v in venues.values() if isinstance(v, UniswapV2Venue)]


def v3_venue(chain: RpcClient, devnet: DevnetManifest) -> UniswapV3Venue:
    venue = venues_from_manifest(devnet, chain)["uniswap-v3"]
    assert isinstance(venue, UniswapV3Venue)
    return venue


# -- Uniswap V2 --------------------------------------------------------------------------------

PATHS = [
    ("USDC", "WETH"), ("WETH", "USDC"), ("WBTC", "USDC"), ("USDC", "WBTC"),
    ("WBTC", "WETH"), ("WETH", "WBTC"), ("UNI", "WETH"), ("WETH", "UNI"),
    ("UNI", "WETH", "USDC"), ("USDC", "WETH", "UNI"), ("WBTC", "WETH", "USDC"),
]


def test_v2_math_is_the_library_formula() -> None:
    # UniswapV2Library: 997/1000 written out by hand.
    for amount, r_in, r_out in [(1, 10**18, 10**6), (10**18, 10**21, 3 * 10**12),
                                (123456789, 987654321, 555), (10**30, 10**18, 10**18)]:
        expected = amount * 997 * r_out // (r_in * 1000 + amount * 997)
        assert v2_math.get_amount_out(amount, r_in, r_out) == expected
    with pytest.raises(ValueError, match="INSUFFICIENT_INPUT_AMOUNT"):
        v2_math.get_amount_out(0, 1, 1)
    with pytest.raises(ValueError, match="INSUFFICIENT_LIQUIDITY"):
        v2_math.get_amount_out(1, 0, 1)
    with pytest.raises(TypeError):
        v2_math.get_amount_out(1.5, 10, 10)  # type: ignore[arg-type]


def test_v2_local_quote_equals_router_get_amounts_out(chain: RpcClient,
                                                      devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    snap = snapshot_of(chain, devnet)
    checked = 0
    for venue in v2_venues(chain, devnet):
        for symbols in PATHS:
            path = [tokens[s] for s in symbols]
            first = venue.pools_on(path)[0]
            hops = venue.hops(path, v2_states(snap))
            reserve_in = hops[0][0]
            sizes = {1, 10**path[0].decimals, reserve_in // 1000, reserve_in // 37,
                     reserve_in // 3, reserve_in * 5}
            for amount in sorted(s for s in sizes if s > 0):
                try:
                    on_chain = router_amounts_out(chain, venue.router, amount, path)
                except ApiError as exc:  # the router reverts (a hop rounds to 0): so do we
                    assert "INSUFFICIENT_INPUT_AMOUNT" in str(exc)
                    with pytest.raises(UnsupportedPair, match="INSUFFICIENT_INPUT_AMOUNT"):
                        venue.quote_path(path, amount, hops)
                    continue
                quote = venue.quote_path(path, amount, hops, block_number=snap.block_number)
                assert quote.amount_out == on_chain[-1], (venue.name, symbols, amount)
                assert quote.extra["amounts"] == tuple(on_chain)
                assert quote.pools[0] == first.address
                checked += 1
    assert checked >= 2 * len(PATHS) * 5


def test_v2_quotes_from_snapshot_cost_no_round_trip_and_without_one_batch(
        chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venue = v2_venues(chain, devnet)[0]
    snap = snapshot_of(chain, devnet)
    before = chain.round_trips
    from_snap = venue.quote_candidates(tokens["WBTC"], tokens["USDC"], 10**8, snap)
    assert chain.round_trips == before
    live = venue.quote_candidates(tokens["WBTC"], tokens["USDC"], 10**8)
    assert chain.round_trips == before + 1  # every pool of both paths in one batch
    assert [q.path for q in from_snap] == [q.path for q in live]
    assert [q.amount_out for q in from_snap] == [q.amount_out for q in live]
    assert {len(q.path) for q in live} == {2, 3}  # direct and through WETH


def test_v2_two_hop_only_pair_and_price_impact(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    venue = v2_venues(chain, devnet)[0]
    snap = snapshot_of(chain, devnet)
    small = venue.quote_exact_in(tokens["UNI"], tokens["USDC"], 10**18, snap)
    assert [t.symbol for t in small.path] == ["UNI", "WETH", "USDC"]
    assert small.gas_estimate > venue.gas_base + venue.gas_per_hop
    # A tiny trade's impact is the two LP fees (~60 bps); a large one moves the price too.
    assert 55 < small.price_impact_bps < 65
    large = venue.quote_exact_in(tokens["UNI"], tokens["USDC"], 10_000 * 10**18, snap)
    assert large.price_impact_bps > 500
    with pytest.raises(UnsupportedPair):
        venue.quote_exact_in(tokens["UNI"], Token("XYZ", "0x" + "11" * 20, 18), 10**18, snap)
    with pytest.raises(ValueError):
        venue.quote_exact_in(tokens["UNI"], tokens["USDC"], 0, snap)
    with pytest.raises(TypeError):
        venue.quote_exact_in(tokens["UNI"], tokens["USDC"], 1.0, snap)  # type: ignore[arg-type]


@pytest.mark.parametrize("symbols", [("USDC", "WETH"), ("WBTC", "USDC"), ("UNI", "WETH", "USDC")])
def test_v2_swap_delivers_exactly_the_quote(chain: RpcClient, devnet: DevnetManifest,
                                            symbols: tuple[str, ...],
                                            rich_hot_wallet: str) -> None:
    tokens = tokens_of(devnet)
    snap = snapshot_of(chain, devnet)
    path = [tokens[s] for s in symbols]
    amount = 3 * 10**path[0].decimals // 2  # 1.5 whole tokens
    if symbols[0] == "USDC":
        amount = 2_500 * 10**6
    for venue in v2_venues(chain, devnet):
        quote = venue.quote_path(path, amount, venue.hops(path, v2_states(snap)))
        received, receipt = execute(chain, venue, quote, devnet.hot_wallet)
        assert received == quote.amount_out
        gas_used = int(receipt["gasUsed"], 16)
        assert gas_used <= quote.gas_estimate * 1.2, (gas_used, quote.gas_estimate)
        snap = snapshot_of(chain, devnet)  # the first swap moved this venue's pools


# -- Uniswap V3 --------------------------------------------------------------------------------


def test_v3_fee_tiers_and_sizes_in_one_batch(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    weth, usdc = tokens["WETH"], tokens["USDC"]
    venue = v3_venue(chain, devnet)
    quoter = chain.w3.eth.contract(address=venue.quoter, abi=load_artifact("QuoterV2").abi)
    before = chain.round_trips
    quotes = venue.quote_candidates(weth, usdc, 10**18)
    assert chain.round_trips == before + 1
    assert sorted(q.fees_ppm for q in quotes) == [(500,), (3000,)]
    for q in quotes:
        direct = quoter.functions.quoteExactInputSingle(
            (weth.address, usdc.address, 10**18, q.fees_ppm[0], 0)).call()
        assert q.amount_out == direct[0]
        assert q.gas_estimate == direct[3] + venue.gas_overhead
        fee_bps = q.fees_ppm[0] / 100
        assert fee_bps < q.price_impact_bps < fee_bps + 20  # the fee tier and a little impact
    routes = venue.routes(weth, usdc)
    sizes = [10**17, 10**18, 10**19, 5 * 10**19]
    before = chain.round_trips
    results = venue.quote_routes([(r, s) for r in routes for s in sizes])
    assert chain.round_trips == before + 1
    assert all(isinstance(r, Quote) for r in results)
    outs = [r.amount_out for r in results if isinstance(r, Quote)]
    for i in range(len(routes)):
        chunk = outs[i * len(sizes):(i + 1) * len(sizes)]
        assert chunk == sorted(chunk)


def test_v3_multi_hop_path_encoding_and_quote(chain: RpcClient, devnet: DevnetManifest) -> None:
    tokens = tokens_of(devnet)
    uni, weth, usdc = tokens["UNI"], tokens["WETH"], tokens["USDC"]
    venue = v3_venue(chain, devnet)
    quotes = venue.quote_candidates(uni, usdc, 100 * 10**18)
    assert {q.fees_ppm for q in quotes} == {(3000, 500), (3000, 3000)}
    quoter = chain.w3.eth.contract(address=venue.quoter, abi=load_artifact("QuoterV2").abi)
    for q in quotes:
        path = encode_path([uni, weth, usdc], q.fees_ppm)
        assert len(path) == 20 * 3 + 3 * 2
        direct = quoter.functions.quoteExactInput(path, 100 * 10**18).call()
        assert q.amount_out == direct[0]


@pytest.mark.parametrize("symbols", [("WETH", "USDC"), ("USDC", "WETH"), ("UNI", "USDC")])
def test_v3_swap_delivers_exactly_the_quote(chain: RpcClient, devnet: DevnetManifest,
                                            symbols: tuple[str, str]) -> None:
    tokens = tokens_of(devnet)
    venue = v3_venue(chain, devnet)
    token_in, token_out = tokens[symbols[0]], tokens[symbols[1]]
    amount = 2 * 10**token_in.decimals if symbols[0] != "USDC" else 5_000 * 10**6
    quote = venue.quote_exact_in(token_in, token_out, amount, snapshot_of(chain, devnet))
    received, receipt = execute(chain, venue, quote, devnet.hot_wallet)
    assert received == quote.amount_out
    gas_used = int(receipt["gasUsed"], 16)
    assert quote.gas_estimate * 0.7 < gas_used <= quote.gas_estimate * 1.2


# -- every venue: bounded swaps only -------------------------------------------------------------


def test_build_swap_refuses_unbounded_or_bad_input(chain: RpcClient, devnet: DevnetManifest,
                                                   zeroex: FakeZeroEx) -> None:
    tokens = tokens_of(devnet)
    venues = venues_from_manifest(devnet, chain, extra=[zeroex.venue_config()])
    assert set(venues) == {"uniswap-v2", "sushiswap-v2", "uniswap-v3", "0x"}
    wallet = devnet.hot_wallet
    for venue in venues.values():
        quote = venue.quote_exact_in(tokens["WETH"], tokens["USDC"], 10**18)
        assert quote.amount_out > 0
        ok = venue.build_swap(quote, recipient=wallet, min_amount_out=quote.amount_out // 2,
                              deadline=2**32)
        assert ok.data.startswith("0x") and ok.gas_limit >= quote.gas_estimate
        for bad in (0, -1):
            with pytest.raises(ValueError, match="min_amount_out must be > 0"):
                venue.build_swap(quote, recipient=wallet, min_amount_out=bad, deadline=2**32)
        with pytest.raises(TypeError):
            venue.build_swap(quote, recipient=wallet, min_amount_out=1.5,  # type: ignore[arg-type]
                             deadline=2**32)
        with pytest.raises(ValueError, match="deadline"):
            venue.build_swap(quote, recipient=wallet, min_amount_out=1, deadline=0)
        with pytest.raises(ValueError, match="not an Ethereum address"):
            venue.build_swap(quote, recipient="0x1234", min_amount_out=1, deadline=2**32)
        other = next(v for v in venues.values() if v is not venue)
        with pytest.raises(ValueError, match="is from venue"):
            other.build_swap(quote, recipient=wallet, min_amount_out=1, deadline=2**32)


# -- the 0x v2 API client ----------------------------------------------------------------------


def zeroex_venue(devnet: DevnetManifest, server: FakeZeroEx, *, timeout: float = 5.0,
                 key: str | None = None, url: str | None = None) -> ZeroExVenue:
    return ZeroExVenue("0x", api_url=url or server.url, chain_id=devnet.chain_id,
                       taker=devnet.hot_wallet, api_key=server.api_key if key is None else key,
                       slippage_bps=30, timeout=timeout)


def test_zeroex_quote_has_the_v2_shape_and_the_swap_executes(
        chain: RpcClient, devnet: DevnetManifest, zeroex: FakeZeroEx) -> None:
    tokens = tokens_of(devnet)
    venue = zeroex_venue(devnet, zeroex)
    amount = 4_000 * 10**6
    quote = venue.quote_exact_in(tokens["USDC"], tokens["WETH"], amount)
    request = zeroex.requests[-1]
    assert request.path == "/swap/allowance-holder/quote"
    assert request.headers["0x-api-key"] == zeroex.api_key
    assert request.headers["0x-version"] == "v2"
    assert request.params == {
        "chainId": str(devnet.chain_id), "sellToken": tokens["USDC"].address,
        "buyToken": tokens["WETH"].address, "sellAmount": str(amount),
        "taker": devnet.hot_wallet, "slippageBps": "30"}
    # The best V2 router's price; spender named by issues.allowance (no allowance yet).
    best = max(router_amounts_out(chain, v.router, amount, [tokens["USDC"], tokens["WETH"]])[-1]
               for v in v2_venues(chain, devnet))
    assert quote.amount_out == best
    assert quote.extra["min_buy_amount"] == best * (10_000 - 30) // 10_000
    spender = venue.approval_spender(quote)
    assert spender in {v.router for v in v2_venues(chain, devnet)}
    received, _ = execute(chain, venue, quote, devnet.hot_wallet, slippage_bps=30)
    assert received >= quote.extra["min_buy_amount"]
    assert received == quote.amount_out  # nothing traded in between
    # With the allowance in place, 0x names no allowance issue: the spender is transaction.to.
    approve_exact(chain, devnet.hot_wallet, tokens["USDC"], spender, amount)
    again = venue.quote_exact_in(tokens["USDC"], tokens["WETH"], amount)
    assert venue.approval_spender(again) == again.extra["transaction"]["to"]


def test_zeroex_refuses_a_looser_bound_than_required(devnet: DevnetManifest,
                                                     zeroex: FakeZeroEx) -> None:
    tokens = tokens_of(devnet)
    venue = zeroex_venue(devnet, zeroex)
    quote = venue.quote_exact_in(tokens["WETH"], tokens["USDC"], 10**18)
    with pytest.raises(ApiError, match="only guarantees"):
        venue.build_swap(quote, recipient=devnet.hot_wallet,
                         min_amount_out=quote.extra["min_buy_amount"] + 1, deadline=2**32)
    with pytest.raises(ValueError, match="taker"):
        venue.build_swap(quote, recipient=devnet.cold_wallet, min_amount_out=1, deadline=2**32)


def _set(path: str, value: Any) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        target = body
        keys = path.split(".")
        for k in keys[:-1]:
            target = target[k]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return mutate


_DELETE = object()

WRONG_ANSWERS = [
    ("missing buyAmount", _set("buyAmount", _DELETE), "lacks buyAmount"),
    ("buyAmount ill-typed", _set("buyAmount", [1, 2]), "buyAmount is a list"),
    ("buyAmount not a number", _set("buyAmount", "12abc"), "not a non-negative integer"),
    ("negative buyAmount", _set("buyAmount", "-5"), "negative"),
    ("buy below min", _set("minBuyAmount", str(10**40)), "below minBuyAmount"),
    ("zero minimum", _set("minBuyAmount", "0"), "unbounded"),
    ("no transaction", _set("transaction", _DELETE), "lacks a transaction"),
    ("bad transaction.to", _set("transaction.to", "0xnope"), "not an address"),
    ("bad calldata", _set("transaction.data", "swap please"), "not hex calldata"),
    ("native value", _set("transaction.value", "5"), "native token"),
    ("liquidityAvailable missing", _set("liquidityAvailable", _DELETE), "liquidityAvailable"),
    ("another buy token", _set("buyToken", "0x" + "22" * 20), "buyToken"),
    ("another sell amount", _set("sellAmount", "1"), "quoted a sell of"),
    ("a list, not an object", lambda body: [body], "not an object"),
    ("bad spender", _set("issues.allowance", {"spender": 7}), "spender"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), WRONG_ANSWERS,
                         ids=[w[0] for w in WRONG_ANSWERS])
def test_zeroex_wrong_answers_are_api_errors(devnet: DevnetManifest, zeroex: FakeZeroEx,
                                             case: str, mutate: Any, message: str) -> None:
    tokens = tokens_of(devnet)
    venue = zeroex_venue(devnet, zeroex)
    zeroex.fail_next("mutate", mutate=mutate)
    with pytest.raises(ApiError, match=message):
        venue.quote_exact_in(tokens["USDC"], tokens["WETH"], 10**9)
    # The next answer is a good one again.
    assert venue.quote_exact_in(tokens["USDC"], tokens["WETH"], 10**9).amount_out > 0


def test_zeroex_failures_map_onto_error_kinds(devnet: DevnetManifest, zeroex: FakeZeroEx,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = tokens_of(devnet)
    usdc, weth = tokens["USDC"], tokens["WETH"]
    venue = zeroex_venue(devnet, zeroex, timeout=0.3)
    errors: list[Exception] = []

    def fails(kind: type[Exception]) -> Exception:
        with pytest.raises(kind) as info:
            venue.quote_exact_in(usdc, weth, 10**9)
        errors.append(info.value)
        return info.value

    zeroex.fail_next("5xx", status=503)
    assert not isinstance(fails(NetworkError), ApiError)
    zeroex.fail_next("5xx", status=500)
    fails(NetworkError)
    zeroex.fail_next("429", retry_after="7")
    limited = fails(NetworkError)
    assert isinstance(limited, NetworkError) and limited.retry_after == 7.0
    zeroex.fail_next("429", retry_after=None)
    unlimited = fails(NetworkError)
    assert isinstance(unlimited, NetworkError) and unlimited.retry_after is None
    zeroex.fail_next("slow", delay=1.5)
    assert "timed out" in str(fails(NetworkError))
    zeroex.fail_next("garbage")
    assert "not JSON" in str(fails(ApiError))
    zeroex.fail_next("no_liquidity")
    assert isinstance(fails(ApiError), UnsupportedPair)
    zeroex.fail_next("echo_key")
    assert "HTTP 400" in str(fails(ApiError))
    wrong_key = zeroex_venue(devnet, zeroex, key="zx-wrong-key-123456")
    with pytest.raises(ApiError, match="refused our key"):
        wrong_key.quote_exact_in(usdc, weth, 10**9)
    # 4xx from the API's own validation: an ApiError with 0x's reason.
    bad_chain = ZeroExVenue("0x", api_url=zeroex.url, chain_id=1, taker=devnet.hot_wallet,
                            api_key=zeroex.api_key)
    with pytest.raises(ApiError, match="CHAIN_NOT_SUPPORTED"):
        bad_chain.quote_exact_in(usdc, weth, 10**9)
    # Nobody listening: a connection error is a NetworkError.
    closed = zeroex_venue(devnet, zeroex, url="http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(NetworkError):
        closed.quote_exact_in(usdc, weth, 10**9)
    # The key never shows: not in a message, not in a repr, not in a log line.
    for exc in errors:
        assert zeroex.api_key not in str(exc) and zeroex.api_key not in repr(exc)
    assert zeroex.api_key not in repr(venue)
    assert zeroex.api_key not in caplog.text
    assert venue.quote_exact_in(usdc, weth, 10**9).amount_out > 0  # healthy again


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_registry_builds_every_kind_and_names_a_missing_key(
        chain: RpcClient, devnet: DevnetManifest, zeroex: FakeZeroEx,
        monkeypatch: pytest.MonkeyPatch) -> None:
    venues = venues_from_manifest(devnet, chain, extra=[zeroex.venue_config()])
    assert {v.kind for v in venues.values()} == {"uniswap_v2", "uniswap_v3", "zeroex"}
    assert zeroex.api_key not in repr(venues)
    monkeypatch.delenv(API_KEY_ENV)
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        venues_from_manifest(devnet, chain, extra=[zeroex.venue_config()])
    disabled = VenueConfig(name="off", kind=VenueKind.ZEROEX, api_url=zeroex.url, enabled=False)
    assert "off" not in venues_from_manifest(devnet, chain, extra=[disabled])
