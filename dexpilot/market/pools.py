"""Pools and their on-chain state, as read in one snapshot.

A pool is identified by its address and venue; its state is whatever the chain said at one
block. Prices computed here are floats for analysis and display only: swap amounts are computed
from the integer state by the venue math, never from these prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dexpilot.money import Token

Q96 = 2**96


class PoolKind(StrEnum):
    V2 = "v2"
    V3 = "v3"


@dataclass(frozen=True, slots=True)
class PoolRef:
    """Where a pool is and what it trades; ``fee_ppm`` is the LP fee in millionths."""

    venue: str
    kind: PoolKind
    address: str
    token0: Token
    token1: Token
    fee_ppm: int

    @property
    def pair(self) -> str:
        return f"{self.token0.symbol}/{self.token1.symbol}"

    def other(self, token: Token) -> Token:
        if token == self.token0:
            return self.token1
        if token == self.token1:
            return self.token0
        raise ValueError(f"{token.symbol} is not in pool {self.pair} on {self.venue}")


@dataclass(frozen=True, slots=True)
class V2State:
    reserve0: int
    reserve1: int


@dataclass(frozen=True, slots=True)
class V3State:
    sqrt_price_x96: int
    tick: int
    liquidity: int


PoolState = V2State | V3State


@dataclass(frozen=True, slots=True)
class V2Oracle:
    """A V2 pair's price accumulators as stored: ``price0CumulativeLast`` (token1 per token0,
    UQ112x112 times seconds, wrapping at 2**256), ``price1CumulativeLast`` and the uint32
    timestamp of the reserves (``getReserves``' third value) they were last updated at."""

    price0_cumulative_last: int
    price1_cumulative_last: int
    block_timestamp_last: int


@dataclass(frozen=True, slots=True)
class V3Oracle:
    """A V3 pool's ``observe([window_s, 0])``: the tick accumulators ``window_s`` seconds ago
    and now. Absent when the pool's observations do not reach that far back (``OLD``)."""

    window_s: int
    tick_cumulatives: tuple[int, int]


PoolOracle = V2Oracle | V3Oracle


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool at one block. ``oracle``: its time-weighted price data, when the snapshot was
    read with a TWAP window and the pool has them (see ``dexpilot.market.reference``)."""

    pool: PoolRef
    state: PoolState
    block_number: int
    oracle: PoolOracle | None = None

    def price(self) -> float:
        """Price of token0 in token1, decimals applied (e.g. USDC per WETH for WETH/USDC)."""
        raw = raw_price(self.state)
        return raw * 10.0 ** (self.pool.token0.decimals - self.pool.token1.decimals)

    def reserves(self) -> tuple[int, int]:
        """(token0, token1) reserves as a constant-product pool.

        V2: the pair's reserves. V3: the in-range liquidity as virtual reserves
        ``L / sqrtP`` and ``L * sqrtP`` - exact for full-range liquidity, a local model
        otherwise. For sizing and ranking; swap amounts come from the venues' own quotes.
        """
        state = self.state
        if isinstance(state, V2State):
            return state.reserve0, state.reserve1
        if state.sqrt_price_x96 <= 0:
            return 0, 0
        return (state.liquidity * Q96 // state.sqrt_price_x96,
                state.liquidity * state.sqrt_price_x96 // Q96)

    def reserves_from(self, token_in: Token) -> tuple[int, int]:
        """(reserve_in, reserve_out) for a swap that sells ``token_in`` into this pool."""
        r0, r1 = self.reserves()
        if token_in == self.pool.token0:
            return r0, r1
        if token_in == self.pool.token1:
            return r1, r0
        raise ValueError(f"{token_in.symbol} is not in pool {self.pool.pair}")

    def price_of(self, base: Token) -> float:
        """Price of ``base`` in the pool's other token, decimals applied."""
        p = self.price()
        if base == self.pool.token0:
            return p
        if base == self.pool.token1:
            return 1.0 / p if p else float("inf")
        raise ValueError(f"{base.symbol} is not in pool {self.pool.pair}")


def raw_price(state: PoolState) -> float:
    """token1 raw units per token0 raw unit."""
    if isinstance(state, V2State):
        return state.reserve1 / state.reserve0 if state.reserve0 else 0.0
    return float((state.sqrt_price_x96 / Q96) ** 2)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything read from the chain in one batched call, all at ``block_number``."""

    block_number: int
    block_timestamp: int
    chain_id: int
    pools: tuple[PoolSnapshot, ...]
    token_balances: dict[tuple[str, str], int] = field(default_factory=dict)
    native_balances: dict[str, int] = field(default_factory=dict)
    # Token address -> why its balanceOf read failed; such a token has no entry in
    # ``token_balances`` (the cycle quarantines it, see ``dexpilot.trading.pool_set``).
    unreadable_tokens: dict[str, str] = field(default_factory=dict)

    def pool(self, address: str) -> PoolSnapshot:
        for snap in self.pools:
            if snap.pool.address == address:
                return snap
        raise KeyError(address)

    def balance(self, wallet: str, token: Token) -> int:
        return self.token_balances[(wallet, token.address)]
