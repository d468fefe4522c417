"""The market-snapshot flow: settings from the Prefect block, chain reads, ledger rows, artifact."""

from __future__ import annotations

import pytest
from sqlmodel import select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig
from dexpilot.ledger import BalanceSnapshotRow, Ledger
from tests.fixtures.chain import ANVIL_KEY_1
from tests.fixtures.prefect import PrefectServer


@pytest.mark.prefect
def test_snapshot_flow_records_chain_balances(
    prefect_server: PrefectServer, devnet: DevnetManifest, chain: RpcClient, test_env: AppConfig,
) -> None:
    from prefect.client.orchestration import get_client

    from flows.market_snapshot import market_snapshot
    from settings.blocks import push_settings

    ledger_url = test_env.ledger.url
    push_settings("test")

    block = market_snapshot(env="test")

    assert block == int(chain.request("eth_blockNumber"), 16)
    ledger = Ledger(ledger_url)
    with ledger.session(write=False) as session:
        rows = session.exec(select(BalanceSnapshotRow)).all()
    assert len(rows) == len(devnet.tokens)
    usdc = next(t for t in devnet.tokens if t.symbol == "USDC")
    recorded = next(r.amount for r in rows if r.token == usdc.address)
    data = "0x70a08231" + devnet.hot_wallet[2:].lower().rjust(64, "0")
    on_chain = int(chain.request("eth_call", [{"to": usdc.address, "data": data}, "latest"]), 16)
    assert recorded == on_chain and all(r.block_number == block for r in rows)

    async def artifact_markdown() -> str:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            found = [a for a in artifact if a.key == "market-test"]
            assert found, "market artifact missing"
            return str(found[0].data)

    import asyncio

    markdown = asyncio.run(artifact_markdown())
    assert "WETH/USDC" in markdown and "Cross-venue spreads" in markdown
    assert ANVIL_KEY_1[2:] not in markdown
