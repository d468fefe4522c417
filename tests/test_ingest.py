"""Swap-event ingestion on the real dev chain: all pools per request, refused ranges halved,
resume without duplicates, a 2-block reorg repaired."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import select

from dexpilot.chain.artifacts import load_artifact
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError
from dexpilot.ledger.models import IngestCursorRow, SwapEventRow
from dexpilot.ledger.store import Ledger
from dexpilot.market.ingest import (
    SwapIngestor,
    is_range_refusal,
    stored_swaps,
)
from dexpilot.market.pools import PoolKind
from tests.fakes.rpc_proxy import ALCHEMY_REFUSAL, RpcProxy
from tests.fixtures.analysis import SwapDone, Swapper

PAIR = "WETH/USDC"


def _events(ledger: Ledger) -> list[SwapEventRow]:
    with ledger.session(write=False) as session:
        return list(session.exec(select(SwapEventRow).order_by(
            sa.asc(SwapEventRow.block_number))).all())  # type: ignore[arg-type]


def _make_swaps(swapper: Swapper, count: int) -> list[SwapDone]:
    """``count`` swaps cycling over every WETH/USDC pool, alternating sides."""
    pools = [p for p in swapper.manifest.pool_refs() if p.pair == PAIR]
    done = []
    for i in range(count):
        pool = pools[i % len(pools)]
        if i % 2 == 0:
            done.append(swapper.swap(pool, pool.token0, (i + 1) * 10**17))  # sell WETH
        else:
            done.append(swapper.swap(pool, pool.token1, (i + 1) * 100 * 10**6))  # buy WETH
    return done


def _assert_matches(rows: list[SwapEventRow], swaps: list[SwapDone]) -> None:
    by_tx = {r.tx_hash: r for r in rows}
    assert len(by_tx) == len(rows) == len(swaps)
    for swap in swaps:
        row = by_tx[swap.tx_hash]
        assert (row.pool, row.block_number, row.block_hash, row.block_time) == (
            swap.pool.address, swap.block_number, swap.block_hash, swap.block_time)
        if swap.token_in == swap.pool.token0:
            assert (row.amount0_in, row.amount1_out, row.amount1_in, row.amount0_out) == (
                swap.amount_in, swap.amount_out, 0, 0)
        else:
            assert (row.amount1_in, row.amount0_out, row.amount0_in, row.amount1_out) == (
                swap.amount_in, swap.amount_out, 0, 0)
        assert (row.sqrt_price_x96 is not None) == (swap.pool.kind is PoolKind.V3)


def test_ingests_every_pool_in_one_request_and_resumes_without_duplicates(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
    refusing_rpc: RpcProxy,
) -> None:
    start = swapper.head() + 1
    first = _make_swaps(swapper, 6)
    pools = devnet.pool_refs()
    with RpcClient([refusing_rpc.url]) as client:
        ingestor = SwapIngestor(client, market_ledger, pools, start_block=start, reorg_depth=3)
        report = ingestor.run()
        # One eth_getLogs for the whole range, naming every configured pool.
        assert report.log_requests == 1 and report.refusals == 0
        [query] = refusing_rpc.log_queries
        assert sorted(query.addresses) == sorted(p.address for p in pools)
        # Block timestamps came in one batch.
        assert [m for m in refusing_rpc.batches if "eth_getBlockByNumber" in m] == [
            ["eth_getBlockByNumber"] * 6]
        assert report.inserted == 6 and report.duplicates == 0
        _assert_matches(_events(market_ledger), first)

        # Nothing new: the re-read window only finds what is stored.
        again = ingestor.run()
        assert again.inserted == 0 and again.duplicates > 0 and again.removed == 0
        assert again.from_block == swapper.head() - 3 + 1
        second = _make_swaps(swapper, 3)
        # A new ingestor (a restarted process) resumes from the stored cursors.
        resumed = SwapIngestor(client, market_ledger, pools, start_block=start, reorg_depth=3)
        report = resumed.run()
    assert report.from_block == first[-1].block_number - 3 + 1
    assert report.inserted == 3
    _assert_matches(_events(market_ledger), first + second)
    with market_ledger.session(write=False) as session:
        cursors = session.exec(select(IngestCursorRow)).all()
    assert {c.pool for c in cursors} == {p.address for p in pools}
    assert {c.last_block for c in cursors} == {second[-1].block_number}


def test_unique_tx_hash_and_log_index_is_enforced_by_the_database(
    swapper: Swapper, devnet: DevnetManifest, market_ledger: Ledger, chain: RpcClient,
) -> None:
    start = swapper.head() + 1
    _make_swaps(swapper, 1)
    SwapIngestor(chain, market_ledger, devnet.pool_refs(), start_block=start).run()
    [row] = _events(market_ledger)
    copy = SwapEventRow(**{k: v for k, v in row.model_dump().items() if k != "id"})
    with pytest.raises(sa.exc.IntegrityError), market_ledger.session() as session:
        session.add(copy)


def test_refused_large_ranges_are_halved_until_they_pass(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
    refusing_rpc: RpcProxy,
) -> None:
    refusing_rpc.max_range = 3
    start = swapper.head() + 1
    swaps = _make_swaps(swapper, 10)
    with RpcClient([refusing_rpc.url]) as client:
        ingestor = SwapIngestor(client, market_ledger, devnet.pool_refs(), start_block=start,
                                max_range=64)
        report = ingestor.run()
    # The whole span is 10 blocks: 10 refused, 5 refused, then 2 at a time.
    assert report.refusals == 2
    assert report.step == 2
    passed = [q for q in refusing_rpc.log_queries if not q.refused]
    assert all(q.to_block - q.from_block + 1 <= 3 for q in passed)
    # The passed ranges tile the whole span exactly once.
    covered = sorted(b for q in passed for b in range(q.from_block, q.to_block + 1))
    assert covered == list(range(start, swapper.head() + 1))
    _assert_matches(_events(market_ledger), swaps)


def test_other_refusal_wordings_are_recognised_and_other_errors_are_not(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
    refusing_rpc: RpcProxy,
) -> None:
    refusing_rpc.max_range = 2
    refusing_rpc.error = dict(ALCHEMY_REFUSAL)
    start = swapper.head() + 1
    swaps = _make_swaps(swapper, 4)
    with RpcClient([refusing_rpc.url]) as client:
        SwapIngestor(client, market_ledger, devnet.pool_refs(), start_block=start,
                     max_range=100).run()
    _assert_matches(_events(market_ledger), swaps)
    assert is_range_refusal(ApiError("x: eth_getLogs failed: block range too large"))
    assert not is_range_refusal(ApiError("x: eth_getLogs failed: invalid address"))
    # A refusal that a single block still gets is not a size problem: it propagates.
    refusing_rpc.max_range = 0
    with RpcClient([refusing_rpc.url]) as client, pytest.raises(ApiError, match="500 block"):
        SwapIngestor(client, market_ledger, devnet.pool_refs(), start_block=start,
                     max_range=8).run()


def test_a_two_block_reorg_replaces_the_orphaned_events(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
) -> None:
    pools = devnet.pool_refs()
    start = swapper.head() + 1
    kept = _make_swaps(swapper, 2)
    fork_point = chain.request("evm_snapshot")
    weth_usdc = swapper.pool("uniswap-v2", PAIR)
    orphaned = [swapper.swap(weth_usdc, weth_usdc.token0, 10**18),
                swapper.swap(weth_usdc, weth_usdc.token0, 2 * 10**18)]
    ingestor = SwapIngestor(chain, market_ledger, pools, start_block=start, reorg_depth=4)
    assert ingestor.run().inserted == 4
    _assert_matches(_events(market_ledger), kept + orphaned)

    # The last two blocks are replaced by two blocks with other swaps (so other hashes).
    assert chain.request("evm_revert", [fork_point]) is True
    v3 = next(p for p in pools if p.pair == PAIR and p.kind is PoolKind.V3)
    replacement = [swapper.swap(v3, v3.token1, 500 * 10**6),
                   swapper.swap(weth_usdc, weth_usdc.token1, 700 * 10**6)]
    assert [s.block_number for s in replacement] == [s.block_number for s in orphaned]
    assert {s.block_hash for s in replacement}.isdisjoint({s.block_hash for s in orphaned})

    report = ingestor.run()
    assert (report.removed, report.inserted) == (2, 2)
    assert report.changed_since == min(s.block_time for s in orphaned + replacement)
    _assert_matches(_events(market_ledger), kept + replacement)
    # What is stored is what the chain now says, block by block.
    for row in _events(market_ledger):
        block = chain.request("eth_getBlockByNumber", [hex(row.block_number), False])
        assert row.block_hash == block["hash"].lower()


def test_v3_swaps_keep_the_pool_state_after_the_swap(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
) -> None:
    v3 = next(p for p in devnet.pool_refs() if p.pair == PAIR and p.kind is PoolKind.V3)
    start = swapper.head() + 1
    swapper.swap(v3, v3.token0, 3 * 10**18)
    SwapIngestor(chain, market_ledger, [v3], start_block=start).run()
    [row] = stored_swaps(market_ledger, [v3])
    pool = chain.w3.eth.contract(address=v3.address,  # type: ignore[call-overload]
                                 abi=load_artifact("UniswapV3Pool").abi)
    sqrt_price, tick, *_ = pool.functions.slot0().call()
    assert (row.sqrt_price_x96, row.tick) == (sqrt_price, tick)
    assert row.liquidity == pool.functions.liquidity().call()
