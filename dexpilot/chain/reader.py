"""Batched chain reads: the state of every pool, token balances and the block in one round trip.

All reads go through the on-chain multicall contract (``UniswapInterfaceMulticall``, deployed
by Uniswap on mainnet and by the dev chain here), so one ``eth_call`` returns every pool's state
*at one block* plus that block's number and timestamp. Large read sets are split into chunks
that still travel in one JSON-RPC batch; chunks are only accepted if they all ran at the same
block. The chain id rides in the same batch, so a node that changed chains is noticed on
every snapshot at no extra cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from dexpilot.chain.rpc import RpcClient
from dexpilot.config import redact_url
from dexpilot.errors import ApiError, SystemFault
from dexpilot.market.pools import (
    MarketSnapshot,
    PoolKind,
    PoolRef,
    PoolSnapshot,
    PoolState,
    V2State,
    V3State,
)
from dexpilot.money import Token


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


GET_RESERVES = _selector("getReserves()")
SLOT0 = _selector("slot0()")
LIQUIDITY = _selector("liquidity()")
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
    ) -> MarketSnapshot:
        calls = [_Call(self.multicall, BLOCK_TIMESTAMP, "block timestamp")]
        for pool in pools:
            if pool.kind is PoolKind.V2:
                calls.append(_Call(pool.address, GET_RESERVES, f"{pool.venue} {pool.pair}"))
            else:
                calls.append(_Call(pool.address, SLOT0, f"{pool.venue} {pool.pair} slot0"))
                calls.append(_Call(pool.address, LIQUIDITY, f"{pool.venue} {pool.pair} liquidity"))
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
            if pool.kind is PoolKind.V2:
                r0, r1, _ = next_value(["uint112", "uint112", "uint32"])
                state = V2State(r0, r1)
            else:
                slot0 = next_value(["uint160", "int24", "uint16", "uint16", "uint16", "uint8",
                                    "bool"])
                (liquidity,) = next_value(["uint128"])
                state = V3State(slot0[0], slot0[1], liquidity)
            snaps.append(PoolSnapshot(pool, state, block))
        native: dict[str, int] = {}
        balances: dict[tuple[str, str], int] = {}
        for wallet in wallets:
            (native[wallet],) = next_value(["uint256"])
            for token in tokens:
                (balances[(wallet, token.address)],) = next_value(["uint256"])
        return MarketSnapshot(block, timestamp, self.expected_chain_id, tuple(snaps), balances,
                              native)

    def _run(self, calls: list[_Call]) -> tuple[int, list[tuple[bool, bytes]]]:
        chunks = [calls[i:i + self.max_calls_per_chunk]
                  for i in range(0, len(calls), self.max_calls_per_chunk)]
        requests: list[tuple[str, Sequence[Any]]] = [("eth_chainId", [])]
        for chunk in chunks:
            payload = MULTICALL + encode(
                ["(address,uint256,bytes)[]"], [[(c.target, CALL_GAS, c.data) for c in chunk]]
            )
            requests.append(("eth_call", [{"to": self.multicall, "data": "0x" + payload.hex()},
                                          "latest"]))
        for _ in range(MAX_BLOCK_RETRIES):
            answers = self.client.batch(requests)
            chain_id = int(answers[0], 16)
            if chain_id != self.expected_chain_id:
                raise SystemFault(f"chain id changed: {redact_url(self.client.url)} now reports "
                                  f"{chain_id}, "
                                  f"expected {self.expected_chain_id}")
            blocks: set[int] = set()
            results: list[tuple[bool, bytes]] = []
            for answer in answers[1:]:
                try:
                    block, chunk_results = decode(["uint256", "(bool,uint256,bytes)[]"],
                                                  bytes.fromhex(answer.removeprefix("0x")))
                except Exception as exc:
                    raise ApiError(f"{redact_url(self.client.url)}: multicall answer undecodable"
                                   ) from exc
                blocks.add(block)
                results.extend((ok, data) for ok, _gas, data in chunk_results)
            if len(blocks) == 1:
                return blocks.pop(), results
        raise ApiError(f"{redact_url(self.client.url)}: multicall chunks kept landing on "
                       "different blocks")
