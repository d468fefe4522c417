"""Uniswap V2 and its forks (SushiSwap, ...): one factory's pairs behind one Router02.

Quotes are computed locally from pool reserves with the library's exact integer formula
(``v2_math``), so a quote from a snapshot costs no round trip and equals the router's
``getAmountsOut`` to the wei. Without a snapshot, the reserves of every pool on every candidate
path are read in one JSON-RPC batch. Paths are the direct pair and two hops through each
configured hub token (WETH), where the venue has the pools.

Swaps call ``swapExactTokensForTokens(amountIn, amountOutMin, path, to, deadline)``; the
router is the spender. Calldata is encoded with ``eth_abi`` from the function signature, so no
build file is needed in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, TypeVar

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError
from dexpilot.market.pools import MarketSnapshot, PoolKind, PoolRef, V2State
from dexpilot.money import Token
from dexpilot.venues import v2_math
from dexpilot.venues.base import (
    Quote,
    SwapTx,
    UnsupportedPair,
    Venue,
    best_quote,
    check_amount_in,
    check_swap_bounds,
)

GET_RESERVES = function_signature_to_4byte_selector("getReserves()")
SWAP_EXACT_TOKENS_FOR_TOKENS = function_signature_to_4byte_selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
)
# Measured on the dev chain (real Router02): one hop 86-131k gas (the upper figure when the
# recipient holds none of token_out yet), two hops ~176k. Base + per hop, rounded up.
V2_GAS_BASE = 55_000
V2_GAS_PER_HOP = 65_000

S = TypeVar("S")
Hop = tuple[int, int]  # (reserve_in, reserve_out) oriented along the trade


def gas_limit_for(estimate: int) -> int:
    """Head-room over an estimate; unused gas is not charged."""
    return estimate * 3 // 2


class UniswapV2Venue(Venue):
    kind = "uniswap_v2"

    def __init__(
        self,
        name: str,
        *,
        router: str,
        pools: Iterable[PoolRef],
        client: RpcClient | None = None,
        hubs: Sequence[Token] = (),
        gas_base: int = V2_GAS_BASE,
        gas_per_hop: int = V2_GAS_PER_HOP,
    ) -> None:
        self.name = name
        self.router = to_checksum_address(router)
        self.client = client
        self.hubs = tuple(hubs)
        self.gas_base = gas_base
        self.gas_per_hop = gas_per_hop
        self._pools: dict[frozenset[str], PoolRef] = {}
        for pool in pools:
            if pool.venue != name or pool.kind is not PoolKind.V2:
                continue
            self._pools[_pair_key(pool.token0, pool.token1)] = pool

    def __repr__(self) -> str:
        return f"UniswapV2Venue({self.name!r}, router={self.router}, pools={len(self._pools)})"

    # -- paths and reserves --------------------------------------------------------------
    @property
    def pools(self) -> list[PoolRef]:
        return list(self._pools.values())

    def pool_for(self, a: Token, b: Token) -> PoolRef | None:
        return self._pools.get(_pair_key(a, b))

    def paths(self, token_in: Token, token_out: Token) -> list[tuple[Token, ...]]:
        """The direct pair (if any), then ``token_in -> hub -> token_out`` per hub."""
        found: list[tuple[Token, ...]] = []
        if self.pool_for(token_in, token_out) is not None:
            found.append((token_in, token_out))
        for hub in self.hubs:
            if _same(hub, token_in) or _same(hub, token_out):
                continue
            if self.pool_for(token_in, hub) is not None and self.pool_for(hub, token_out):
                found.append((token_in, hub, token_out))
        return found

    def pools_on(self, path: Sequence[Token]) -> list[PoolRef]:
        pools = []
        for a, b in pairwise(path):
            pool = self.pool_for(a, b)
            if pool is None:
                raise UnsupportedPair(f"{self.name} has no {a.symbol}/{b.symbol} pool")
            pools.append(pool)
        return pools

    def read_reserves(self, pools: Sequence[PoolRef]) -> tuple[dict[str, V2State], int]:
        """Reserves of ``pools`` and the block number, in one JSON-RPC batch."""
        if self.client is None:
            raise ApiError(f"{self.name}: no snapshot given and no RPC client to read reserves")
        unique = list({p.address: p for p in pools}.values())
        calls: list[tuple[str, Sequence[Any]]] = [("eth_blockNumber", [])]
        calls += [("eth_call", [{"to": p.address, "data": "0x" + GET_RESERVES.hex()}, "latest"])
                  for p in unique]
        answers = self.client.batch(calls)
        block = _hex_int(answers[0], "eth_blockNumber")
        states: dict[str, V2State] = {}
        for pool, raw in zip(unique, answers[1:], strict=True):
            try:
                r0, r1, _ts = decode(["uint112", "uint112", "uint32"],
                                     bytes.fromhex(str(raw).removeprefix("0x")))
            except Exception as exc:
                raise ApiError(f"{self.name}: getReserves of {pool.pair} at {pool.address} "
                               f"returned {str(raw)[:80]!r}") from exc
            states[pool.address] = V2State(int(r0), int(r1))
        return states, block

    def hops(self, path: Sequence[Token], states: Mapping[str, V2State]) -> list[Hop]:
        """``(reserve_in, reserve_out)`` of each pool along ``path``."""
        hops: list[Hop] = []
        for (a, _b), pool in zip(pairwise(path), self.pools_on(path),
                                 strict=True):
            state = lookup(states, pool.address)
            if state is None:
                raise UnsupportedPair(f"{self.name}: no reserves of {pool.pair} in the snapshot")
            if _same(a, pool.token0):
                hops.append((state.reserve0, state.reserve1))
            else:
                hops.append((state.reserve1, state.reserve0))
        return hops

    def _states(self, pools: Sequence[PoolRef], snapshot: MarketSnapshot | None
                ) -> tuple[dict[str, V2State], int | None]:
        if snapshot is None:
            states, block = self.read_reserves(pools)
            return states, block
        found: dict[str, V2State] = {}
        for snap in snapshot.pools:
            if isinstance(snap.state, V2State):
                found[snap.pool.address] = snap.state
        return found, snapshot.block_number

    # -- quoting -------------------------------------------------------------------------
    def quote_path(self, path: Sequence[Token], amount_in: int, hops: Sequence[Hop],
                   *, block_number: int | None = None) -> Quote:
        """Exact quote along ``path`` for pools in the state ``hops`` (no I/O)."""
        check_amount_in(amount_in)
        pools = self.pools_on(path)
        try:
            amounts = v2_math.get_amounts_out(amount_in, hops, [p.fee_ppm for p in pools])
        except ValueError as exc:
            raise UnsupportedPair(f"{self.name} {_show(path)}: {exc}") from None
        return Quote(
            venue=self.name,
            token_in=path[0],
            token_out=path[-1],
            amount_in=amount_in,
            amount_out=amounts[-1],
            gas_estimate=self.gas_base + self.gas_per_hop * len(hops),
            path=tuple(path),
            fees_ppm=tuple(p.fee_ppm for p in pools),
            price_impact_bps=v2_math.price_impact_bps(amount_in, amounts[-1], hops),
            block_number=block_number,
            extra={"hops": tuple(hops), "amounts": tuple(amounts)},
            pools=tuple(p.address for p in pools),
        )

    def quote_candidates(self, token_in: Token, token_out: Token, amount_in: int,
                         snapshot: MarketSnapshot | None = None) -> list[Quote]:
        check_amount_in(amount_in)
        paths = self.paths(token_in, token_out)
        if not paths:
            raise UnsupportedPair(
                f"{self.name} has no pool path for {token_in.symbol}->{token_out.symbol}")
        needed = [pool for path in paths for pool in self.pools_on(path)]
        states, block = self._states(needed, snapshot)
        quotes: list[Quote] = []
        errors: list[str] = []
        for path in paths:
            try:
                quotes.append(self.quote_path(path, amount_in, self.hops(path, states),
                                              block_number=block))
            except UnsupportedPair as exc:
                errors.append(str(exc))
        if not quotes:
            raise UnsupportedPair("; ".join(errors))
        return quotes

    def quote_exact_in(self, token_in: Token, token_out: Token, amount_in: int,
                       snapshot: MarketSnapshot | None = None) -> Quote:
        """The best path by output (fewer hops on a tie)."""
        return best_quote(self.quote_candidates(token_in, token_out, amount_in, snapshot))

    # -- swapping ------------------------------------------------------------------------
    def build_swap(self, quote: Quote, *, recipient: str, min_amount_out: int,
                   deadline: int) -> SwapTx:
        check_swap_bounds(self, quote, recipient=recipient, min_amount_out=min_amount_out,
                          deadline=deadline)
        self.pools_on(quote.path)  # the path must be this venue's
        data = SWAP_EXACT_TOKENS_FOR_TOKENS + encode(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [quote.amount_in, min_amount_out, [t.address for t in quote.path],
             to_checksum_address(recipient), deadline],
        )
        return SwapTx(to=self.router, data="0x" + data.hex(), value=0,
                      gas_limit=gas_limit_for(quote.gas_estimate), spender=self.router)

    def approval_spender(self, quote: Quote) -> str:
        return self.router


def lookup(states: Mapping[str, S], address: str) -> S | None:
    """A pool's state by address, whatever the capitalisation of either side."""
    found = states.get(address)
    if found is None:
        low = address.lower()
        found = next((v for k, v in states.items() if k.lower() == low), None)
    return found


def _pair_key(a: Token, b: Token) -> frozenset[str]:
    return frozenset((a.address.lower(), b.address.lower()))


def _same(a: Token, b: Token) -> bool:
    return a.address.lower() == b.address.lower()


def _show(path: Sequence[Token]) -> str:
    return "->".join(t.symbol for t in path)


def _hex_int(value: object, what: str) -> int:
    try:
        return int(str(value), 16)
    except ValueError:
        raise ApiError(f"{what} answered {str(value)[:40]!r}, not a hex number") from None
