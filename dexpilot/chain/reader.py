"""Batched chain reads: the state of every pool, token balances and the block in one round trip.

All reads go through the on-chain multicall contract (``UniswapInterfaceMulticall``, deployed
by Uniswap on mainnet and by the dev chain here), so one ``eth_call`` returns every pool's state
*at one block* plus that block's number and timestamp. Large read sets are split into chunks
that still travel in one JSON-RPC batch; chunks are only accepted if they all ran at the same
block. The chain id rides in the same batch, so a node that changed chains is noticed on
every snapshot at no extra cost, and so do the pools' oracles when asked for (``twap_window_s``:
V2 cumulative prices, V3 ``observe``), the inputs of the risk engine's reference price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from dexpilot.chain.rpc import RpcClient, WrongChainError
from dexpilot.config import redact_url
from dexpilot.errors import ApiError
from dexpilot.market.pools import (
    MarketSnapshot,
    PoolKind,
    PoolOracle,
    PoolRef,
    PoolSnapshot,
    PoolState,
    V2Oracle,
    V2State,
    V3Oracle,
    V3State,
)
from dexpilot.money import Token


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


GET_RESERVES = _selector("getReserves()")
SLOT0 = _selector("slot0()")
LIQUIDITY = _selector("liquidity()")
# The pools' own oracles (time-weighted prices for the risk engine's reference price).
PRICE0_CUMULATIVE = _selector("price0CumulativeLast()")
PRICE1_CUMULATIVE = _selector("price1CumulativeLast()")
OBSERVE = _selector("observe(uint32[])")
BALANCE_OF = _selector("balanceOf(address)")
GET_ETH_BALANCE = _selector("getEthBalance(address)")
BLOCK_TIMESTAMP = _selector("getCurrentBlockTimestamp()")
MULTICALL = _selector("multicall((address,uint256,bytes)[])")
CALL_GAS = 200_000
MAX_CALLS_PER_CHUNK = 400
MAX_BLOCK_RETRIES = 3


@dataclass(frozen=True, slots=True)
class _Call:
    target: str
    data: bytes
    what: str


def multicall_request(multicall: str, calls: Sequence[tuple[str, bytes]]
                      ) -> tuple[str, list[Any]]:
    """The ``eth_call`` of ``(target, calldata)`` calls through the multicall contract, as one
    request of a JSON-RPC batch (``ChainReader`` and ``config_audit`` share it)."""
    payload = MULTICALL + encode(["(address,uint256,bytes)[]"],
                                 [[(target, CALL_GAS, data) for target, data in calls]])
    return "eth_call", [{"to": multicall, "data": "0x" + payload.hex()}, "latest"]


def decode_multicall(answer: Any) -> tuple[int, list[tuple[bool, bytes]]]:
    """A multicall answer's block number and each call's (success, return data);
    ``ValueError`` if it is not one."""
    try:
        block, results = decode(["uint256", "(bool,uint256,bytes)[]"],
                                bytes.fromhex(str(answer).removeprefix("0x")))
    except Exception as exc:
        raise ValueError(f"not a multicall answer: {str(answer)[:66]!r}") from exc
    return int(block), [(bool(ok), bytes(data)) for ok, _gas, data in results]


class ChainReader:
    """Reads a ``MarketSnapshot`` for a fixed set of pools, tokens and wallets."""

    def __init__(
        self,
        client: RpcClient,
        multicall: str,
        *,
        expected_chain_id: int,
        max_calls_per_chunk: int = MAX_CALLS_PER_CHUNK,
    ) -> None:
        self.client = client
        self.multicall = to_checksum_address(multicall)
        self.expected_chain_id = expected_chain_id
        self.max_calls_per_chunk = max_calls_per_chunk

    def snapshot(
        self,
        pools: Sequence[PoolRef],
        tokens: Sequence[Token] = (),
        wallets: Sequence[str] = (),
        *,
        twap_window_s: int | None = None,
    ) -> MarketSnapshot:
        """``twap_window_s``: also read each pool's oracle in the same call (V2: the
        cumulative prices; V3: ``observe([twap_window_s, 0])``) into ``PoolSnapshot.oracle``."""
        calls = [_Call(self.multicall, BLOCK_TIMESTAMP, "block timestamp")]
        for pool in pools:
            if pool.kind is PoolKind.V2:
                calls.append(_Call(pool.address, GET_RESERVES, f"{pool.venue} {pool.pair}"))
            else:
                calls.append(_Call(pool.address, SLOT0, f"{pool.venue} {pool.pair} slot0"))
                calls.append(_Call(pool.address, LIQUIDITY, f"{pool.venue} {pool.pair} liquidity"))
            if twap_window_s is not None:
                calls.extend(_oracle_calls(pool, twap_window_s))
        for wallet in wallets:
            calls.append(_Call(self.multicall, GET_ETH_BALANCE + encode(["address"], [wallet]),
                               f"native balance of {wallet}"))
            for token in tokens:
                calls.append(_Call(token.address, BALANCE_OF + encode(["address"], [wallet]),
                                   f"{token.symbol} balance of {wallet}"))

        block, results = self._run(calls)
        values = iter(zip(calls, results, strict=True))

        def next_value(types: list[str]) -> tuple[Any, ...]:
            call, (success, data) = next(values)
            if not success:
                raise ApiError(f"read of {call.what} at {call.target} reverted")
            try:
                return tuple(decode(types, data))
            except Exception as exc:
                raise ApiError(f"read of {call.what} at {call.target} returned {data.hex()!r}"
                               ) from exc

        (timestamp,) = next_value(["uint256"])
        snaps = []
        for pool in pools:
            state: PoolState
            reserves_at = 0
            if pool.kind is PoolKind.V2:
                r0, r1, reserves_at = next_value(["uint112", "uint112", "uint32"])
                state = V2State(r0, r1)
            else:
                slot0 = next_value(["uint160", "int24", "uint16", "uint16", "uint16", "uint8",
                                    "bool"])
                (liquidity,) = next_value(["uint128"])
                state = V3State(slot0[0], slot0[1], liquidity)
            oracle = None
            if twap_window_s is not None:
                answers = [next(values)[1] for _ in _oracle_calls(pool, twap_window_s)]
                oracle = _oracle(pool, twap_window_s, answers, reserves_at)
            snaps.append(PoolSnapshot(pool, state, block, oracle))
        native: dict[str, int] = {}
        balances: dict[tuple[str, str], int] = {}
        unreadable: dict[str, str] = {}
        for wallet in wallets:
            (native[wallet],) = next_value(["uint256"])
            for token in tokens:
                # One token whose balanceOf fails (no code, reverts) must not blind the cycle
                # to every other token: it is reported for the cycle to quarantine alone.
                try:
                    (balances[(wallet, token.address)],) = next_value(["uint256"])
                except ApiError as exc:
                    unreadable.setdefault(token.address, str(exc))
        return MarketSnapshot(block, timestamp, self.expected_chain_id, tuple(snaps), balances,
                              native, unreadable_tokens=unreadable)

    def _run(self, calls: list[_Call]) -> tuple[int, list[tuple[bool, bytes]]]:
        chunks = [calls[i:i + self.max_calls_per_chunk]
                  for i in range(0, len(calls), self.max_calls_per_chunk)]
        requests: list[tuple[str, Sequence[Any]]] = [("eth_chainId", [])]
        for chunk in chunks:
            requests.append(multicall_request(self.multicall, [(c.target, c.data) for c in chunk]))
        for _ in range(MAX_BLOCK_RETRIES):
            answers = self.client.batch(requests)
            try:
                chain_id = int(answers[0], 16)
            except (TypeError, ValueError) as exc:
                raise ApiError(f"{redact_url(self.client.url)}: eth_chainId answered "
                               f"{str(answers[0])[:80]!r}") from exc
            if chain_id != self.expected_chain_id:
                raise WrongChainError(
                    f"chain id changed: {redact_url(self.client.url)} now reports {chain_id}, "
                    f"expected {self.expected_chain_id}")
            blocks: set[int] = set()
            results: list[tuple[bool, bytes]] = []
            for answer in answers[1:]:
                try:
                    block, chunk_results = decode_multicall(answer)
                except ValueError as exc:
                    raise ApiError(f"{redact_url(self.client.url)}: multicall answer undecodable"
                                   ) from exc
                blocks.add(block)
                results.extend(chunk_results)
            if len(blocks) == 1:
                return blocks.pop(), results
        raise ApiError(f"{redact_url(self.client.url)}: multicall chunks kept landing on "
                       "different blocks")


def _oracle_calls(pool: PoolRef, window_s: int) -> list[_Call]:
    if pool.kind is PoolKind.V2:
        return [_Call(pool.address, PRICE0_CUMULATIVE, f"{pool.venue} {pool.pair} price0"),
                _Call(pool.address, PRICE1_CUMULATIVE, f"{pool.venue} {pool.pair} price1")]
    return [_Call(pool.address, OBSERVE + encode(["uint32[]"], [[window_s, 0]]),
                  f"{pool.venue} {pool.pair} observe")]


def _oracle(pool: PoolRef, window_s: int, answers: list[tuple[bool, bytes]],
            reserves_at: int) -> PoolOracle | None:
    """The pool's oracle data, or ``None`` where it has none: a V3 pool whose observations do
    not reach ``window_s`` back reverts ``OLD``, a V2 fork may lack the accumulators. Neither
    is an error: that pool simply offers no time-weighted price."""
    if not all(ok for ok, _ in answers):
        return None
    try:
        if pool.kind is PoolKind.V2:
            (c0,), (c1,) = (decode(["uint256"], data) for _, data in answers)
            return V2Oracle(c0, c1, reserves_at)
        ticks, _seconds_per_liquidity = decode(["int56[]", "uint160[]"], answers[0][1])
    except Exception:
        return None
    if len(ticks) != 2:
        return None
    return V3Oracle(window_s, (int(ticks[0]), int(ticks[1])))
