"""Uniswap V3: quotes from QuoterV2 by ``eth_call``, swaps through SwapRouter.

V3 output depends on ticks a snapshot does not hold, so quotes ask the chain's QuoterV2, which
simulates the real swap. Every candidate (each fee tier of the direct pair, each pair of pools
through a hub token, several sizes) goes out in one JSON-RPC batch with the block number and,
where the snapshot lacks them, the pools' ``slot0``/``liquidity`` (for the mid price and the
router's split model). A batch in which one call reverts is retried call by call, so one bad
pool does not hide the others.

Single-hop swaps use ``exactInputSingle``, multi-hop ``exactInput`` with the packed path
``token (20 bytes) | fee (3 bytes) | token | ...``. Gas: QuoterV2's own ``gasEstimate`` (the
pool swaps) plus a fixed overhead for the transaction and router.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from dexpilot.chain.failover import with_failover
from dexpilot.chain.rpc import RevertError, RpcClient
from dexpilot.errors import ApiError
from dexpilot.market.pools import Q96, MarketSnapshot, PoolKind, PoolRef, V3State
from dexpilot.money import Token
from dexpilot.venues.base import (
    Quote,
    SwapTx,
    UnsupportedPair,
    Venue,
    best_quote,
    check_amount_in,
    check_swap_bounds,
)
from dexpilot.venues.uniswap_v2 import gas_limit_for, lookup

QUOTE_EXACT_INPUT_SINGLE = function_signature_to_4byte_selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))")
QUOTE_EXACT_INPUT = function_signature_to_4byte_selector("quoteExactInput(bytes,uint256)")
EXACT_INPUT_SINGLE = function_signature_to_4byte_selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))")
EXACT_INPUT = function_signature_to_4byte_selector(
    "exactInput((bytes,address,uint256,uint256,uint256))")
SLOT0 = function_signature_to_4byte_selector("slot0()")
LIQUIDITY = function_signature_to_4byte_selector("liquidity()")
# Measured on the dev chain: a swap's gasUsed exceeds QuoterV2's estimate by 17-25k (the
# transaction's 21k base plus the router's own work).
V3_GAS_OVERHEAD = 30_000
PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class V3Route:
    """A path through specific pools: ``tokens[i] -> tokens[i+1]`` in ``pools[i]``."""

    tokens: tuple[Token, ...]
    pools: tuple[PoolRef, ...]

    @property
    def fees(self) -> tuple[int, ...]:
        return tuple(p.fee_ppm for p in self.pools)

    def encoded_path(self) -> bytes:
        return encode_path(self.tokens, self.fees)

    def show(self) -> str:
        return "->".join(f"{t.symbol}" for t in self.tokens) + f" fees {list(self.fees)}"


def encode_path(tokens: Sequence[Token], fees: Sequence[int]) -> bytes:
    """Uniswap V3's packed path: ``token | fee(uint24) | token | ...``."""
    if len(tokens) != len(fees) + 1 or not fees:
        raise ValueError(f"a path of {len(tokens)} tokens needs {len(tokens) - 1} fees")
    out = bytes.fromhex(tokens[0].address[2:])
    for fee, token in zip(fees, tokens[1:], strict=True):
        out += fee.to_bytes(3, "big") + bytes.fromhex(token.address[2:])
    return out


class UniswapV3Venue(Venue):
    kind = "uniswap_v3"

    def __init__(
        self,
        name: str,
        *,
        client: RpcClient,
        quoter: str,
        router: str,
        pools: Iterable[PoolRef],
        hubs: Sequence[Token] = (),
        gas_overhead: int = V3_GAS_OVERHEAD,
    ) -> None:
        self.name = name
        self.client = client
        self.quoter = to_checksum_address(quoter)
        self.router = to_checksum_address(router)
        self.hubs = tuple(hubs)
        self.gas_overhead = gas_overhead
        self._pools: dict[frozenset[str], list[PoolRef]] = {}
        for pool in pools:
            if pool.venue == name and pool.kind is PoolKind.V3:
                self._pools.setdefault(_pair_key(pool.token0, pool.token1), []).append(pool)
        for tiers in self._pools.values():
            tiers.sort(key=lambda p: p.fee_ppm)

    def __repr__(self) -> str:
        return f"UniswapV3Venue({self.name!r}, quoter={self.quoter}, router={self.router})"

    # -- routes --------------------------------------------------------------------------
    @property
    def pools(self) -> list[PoolRef]:
        return [p for tiers in self._pools.values() for p in tiers]

    def pools_for(self, a: Token, b: Token) -> list[PoolRef]:
        return list(self._pools.get(_pair_key(a, b), []))

    def routes(self, token_in: Token, token_out: Token) -> list[V3Route]:
        """Each fee tier of the direct pair, then each pool pair through each hub."""
        found = [V3Route((token_in, token_out), (p,)) for p in self.pools_for(token_in, token_out)]
        for hub in self.hubs:
            if _same(hub, token_in) or _same(hub, token_out):
                continue
            for first in self.pools_for(token_in, hub):
                for second in self.pools_for(hub, token_out):
                    found.append(V3Route((token_in, hub, token_out), (first, second)))
        return found

    def route_of(self, quote: Quote) -> V3Route:
        """The pools a quote goes through (checked against this venue's configuration)."""
        pools = []
        for (a, b), fee in zip(pairwise(quote.path), quote.fees_ppm,
                               strict=True):
            match = [p for p in self.pools_for(a, b) if p.fee_ppm == fee]
            if not match:
                raise ValueError(f"{self.name} has no {a.symbol}/{b.symbol} pool at fee {fee}")
            pools.append(match[0])
        if len(pools) != quote.hops or quote.hops < 1:
            raise ValueError(f"quote path {[t.symbol for t in quote.path]} does not match its "
                             f"fees {quote.fees_ppm}")
        return V3Route(tuple(quote.path), tuple(pools))

    # -- quoting -------------------------------------------------------------------------
    def quote_routes(self, requests: Sequence[tuple[V3Route, int]],
                     snapshot: MarketSnapshot | None = None) -> list[Quote | ApiError]:
        """QuoterV2 quotes for (route, amount_in) pairs, all in one JSON-RPC batch.

        A route that reverts (no liquidity, bad pool) comes back as its ``ApiError`` in place;
        a transport failure raises ``NetworkError`` for the whole call.
        """
        for _route, amount in requests:
            check_amount_in(amount)
        known: dict[str, V3State] = {}
        if snapshot is not None:
            for snap in snapshot.pools:
                if isinstance(snap.state, V3State):
                    known[snap.pool.address] = snap.state
        missing = list({p.address: p for route, _ in requests for p in route.pools
                        if lookup(known, p.address) is None}.values())
        calls: list[tuple[str, Sequence[Any]]] = [("eth_blockNumber", [])]
        for route, amount in requests:
            calls.append(("eth_call", [{"to": self.quoter, "data": _quote_data(route, amount)},
                                       "latest"]))
        for pool in missing:
            calls.append(("eth_call", [{"to": pool.address, "data": "0x" + SLOT0.hex()},
                                       "latest"]))
            calls.append(("eth_call", [{"to": pool.address, "data": "0x" + LIQUIDITY.hex()},
                                       "latest"]))
        answers = self._batch(calls)
        block = snapshot.block_number if snapshot is not None else None
        if not isinstance(answers[0], ApiError):
            try:
                block = int(str(answers[0]), 16)
            except ValueError:
                block = None
        states = dict(known)
        offset = 1 + len(requests)
        for i, pool in enumerate(missing):
            slot0, liquidity = answers[offset + 2 * i], answers[offset + 2 * i + 1]
            try:
                sqrt_price = decode(["uint160", "int24"], _bytes(slot0)[:64])
                (liq,) = decode(["uint128"], _bytes(liquidity))
                states[pool.address] = V3State(int(sqrt_price[0]), int(sqrt_price[1]), int(liq))
            except Exception:  # the quote still stands; only impact/model data is missing
                continue
        results: list[Quote | ApiError] = []
        for (route, amount), answer in zip(requests, answers[1:1 + len(requests)], strict=True):
            if isinstance(answer, ApiError):
                results.append(ApiError(f"{self.name} {route.show()}: quote failed: {answer}"))
                continue
            try:
                results.append(self._quote(route, amount, answer, states, block))
            except ApiError as exc:
                results.append(exc)
        return results

    def _quote(self, route: V3Route, amount_in: int, answer: Any,
               states: dict[str, V3State], block: int | None) -> Quote:
        raw = _bytes(answer)
        try:
            if len(route.pools) == 1:
                amount_out, _after, _ticks, gas = decode(
                    ["uint256", "uint160", "uint32", "uint256"], raw)
            else:
                amount_out, _afters, _ticks, gas = decode(
                    ["uint256", "uint160[]", "uint32[]", "uint256"], raw)
        except Exception as exc:
            raise ApiError(f"{self.name} {route.show()}: QuoterV2 answered "
                           f"{str(answer)[:80]!r}") from exc
        if amount_out <= 0:
            raise UnsupportedPair(f"{self.name} {route.show()}: quote of 0 (no liquidity)")
        hops = virtual_hops(route, states)
        impact = 0.0
        if hops is not None:
            mid = 1.0
            for r_in, r_out in hops:
                mid *= r_out / r_in
            impact = (1.0 - (amount_out / amount_in) / mid) * 10_000 if mid > 0 else 0.0
        extra: dict[str, Any] = {"quoter_gas": int(gas)}
        if hops is not None:
            extra["virtual_hops"] = tuple(hops)
        return Quote(
            venue=self.name,
            token_in=route.tokens[0],
            token_out=route.tokens[-1],
            amount_in=amount_in,
            amount_out=int(amount_out),
            gas_estimate=int(gas) + self.gas_overhead,
            path=route.tokens,
            fees_ppm=route.fees,
            price_impact_bps=impact,
            block_number=block,
            extra=extra,
            pools=tuple(p.address for p in route.pools),
        )

    def _batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """One round trip; if a call reverts, each call again alone, reverts in place.

        An endpoint that cannot answer (no answer, an error object that is not a revert,
        garbage) is the error policy's to handle: retried, then the next endpoint, so a
        broken node does not look like a pool without liquidity.
        """
        return with_failover(self.client, lambda: self._batch_once(calls))

    def _batch_once(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        try:
            return self.client.batch(calls)
        except RevertError:
            answers: list[Any] = []
            for method, params in calls:
                try:
                    answers.append(self.client.request(method, params))
                except RevertError as exc:
                    answers.append(exc)
            return answers

    def quote_candidates(self, token_in: Token, token_out: Token, amount_in: int,
                         snapshot: MarketSnapshot | None = None) -> list[Quote]:
        check_amount_in(amount_in)
        routes = self.routes(token_in, token_out)
        if not routes:
            raise UnsupportedPair(
                f"{self.name} has no pool route for {token_in.symbol}->{token_out.symbol}")
        results = self.quote_routes([(r, amount_in) for r in routes], snapshot)
        quotes = [r for r in results if isinstance(r, Quote)]
        if not quotes:
            errors = [r for r in results if isinstance(r, ApiError)]
            raise ApiError("; ".join(str(e) for e in errors))
        return quotes

    def quote_exact_in(self, token_in: Token, token_out: Token, amount_in: int,
                       snapshot: MarketSnapshot | None = None) -> Quote:
        """The best route by output (fewer hops on a tie), one round trip."""
        return best_quote(self.quote_candidates(token_in, token_out, amount_in, snapshot))

    # -- swapping ------------------------------------------------------------------------
    def build_swap(self, quote: Quote, *, recipient: str, min_amount_out: int,
                   deadline: int) -> SwapTx:
        check_swap_bounds(self, quote, recipient=recipient, min_amount_out=min_amount_out,
                          deadline=deadline)
        route = self.route_of(quote)
        recipient = to_checksum_address(recipient)
        if len(route.pools) == 1:
            data = EXACT_INPUT_SINGLE + encode(
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                [(route.tokens[0].address, route.tokens[1].address, route.fees[0], recipient,
                  deadline, quote.amount_in, min_amount_out, 0)],
            )
        else:
            data = EXACT_INPUT + encode(
                ["(bytes,address,uint256,uint256,uint256)"],
                [(route.encoded_path(), recipient, deadline, quote.amount_in, min_amount_out)],
            )
        return SwapTx(to=self.router, data="0x" + data.hex(), value=0,
                      gas_limit=gas_limit_for(quote.gas_estimate), spender=self.router)

    def approval_spender(self, quote: Quote) -> str:
        return self.router


def virtual_hops(route: V3Route, states: dict[str, V3State]) -> list[tuple[int, int]] | None:
    """Each pool's in-range liquidity as constant-product reserves ``(in, out)``.

    ``x = L / sqrtP``, ``y = L * sqrtP``: exact for a full-range position and a fair local
    model until the price crosses the next initialized tick. ``None`` if a pool's state is
    unknown or empty. Used for the mid price and the router's split model, never for an amount
    sent on chain (those come from QuoterV2).
    """
    hops = []
    for token, pool in zip(route.tokens, route.pools, strict=False):
        state = lookup(states, pool.address)
        if state is None or state.liquidity <= 0 or state.sqrt_price_x96 <= 0:
            return None
        x = state.liquidity * Q96 // state.sqrt_price_x96
        y = state.liquidity * state.sqrt_price_x96 // Q96
        if x <= 0 or y <= 0:
            return None
        hops.append((x, y) if _same(token, pool.token0) else (y, x))
    return hops


def _quote_data(route: V3Route, amount_in: int) -> str:
    if len(route.pools) == 1:
        data = QUOTE_EXACT_INPUT_SINGLE + encode(
            ["(address,address,uint256,uint24,uint160)"],
            [(route.tokens[0].address, route.tokens[1].address, amount_in, route.fees[0], 0)],
        )
    else:
        data = QUOTE_EXACT_INPUT + encode(["bytes", "uint256"],
                                          [route.encoded_path(), amount_in])
    return "0x" + data.hex()


def _bytes(answer: Any) -> bytes:
    if not isinstance(answer, str):
        raise ApiError(f"expected hex data, got {type(answer).__name__}")
    return bytes.fromhex(answer.removeprefix("0x"))


def _pair_key(a: Token, b: Token) -> frozenset[str]:
    return frozenset((a.address.lower(), b.address.lower()))


def _same(a: Token, b: Token) -> bool:
    return a.address.lower() == b.address.lower()
