"""The analysis flow under a real Prefect server: candles -> models mapped per pair -> signals
in the ledger -> a table artifact of signals and a markdown summary of the market."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlmodel import select

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.simulator import MarketSimulator, SimulatorParams
from dexpilot.config import AppConfig
from dexpilot.ledger import Ledger, SignalRow
from dexpilot.market.candles import load_candles
from tests.fixtures.prefect import PrefectServer


@pytest.mark.prefect
def test_analysis_flow_stores_signals_and_publishes_both_artifacts(
    prefect_server: PrefectServer, test_env: AppConfig, synthetic_candles_file: Path,
) -> None:
    from prefect.client.orchestration import get_client

    from flows.analysis import analysis
    from settings.blocks import push_settings

    push_settings("test")
    outcome = analysis(env="test", candles_path=str(synthetic_candles_file))

    assert outcome["signals"] >= 1
    ledger = Ledger(test_env.ledger.url)
    try:
        with ledger.session(write=False) as session:
            rows = session.exec(select(SignalRow)).all()
    finally:
        ledger.dispose()
    assert len(rows) == outcome["signals"]
    assert {(r.pair, r.model, r.side) for r in rows} >= {("WETH/USDC", "mean_reversion", "sell")}
    assert all(r.inputs_from < r.inputs_to and r.horizon_s > 0 for r in rows)

    async def artifacts() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return {a.key: a for a in found}

    found = asyncio.run(artifacts())
    table, summary = found.get("signals-test"), found.get("analysis-test")
    assert table is not None and table.type == "table", sorted(found)
    assert summary is not None and summary.type == "markdown"
    assert "mean_reversion" in str(table.data) and "not stationary" not in str(summary.data)
    assert "WBTC/USDC" in str(table.data)  # the silent pair is listed with its reason
    assert "| WETH/USDC |" in str(summary.data) and "| WBTC/USDC |" in str(summary.data)


@pytest.mark.prefect
def test_analysis_flow_ingests_the_chain_into_candles(
    prefect_server: PrefectServer, test_env: AppConfig, chain: RpcClient,
    devnet: DevnetManifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a file, the flow reads the pools' swap events and builds candles from them."""
    from flows.analysis import analysis
    from settings.blocks import push_settings

    monkeypatch.setenv("DEXPILOT_CANDLES_DIR", str(tmp_path / "candles"))
    push_settings("test")
    sim = MarketSimulator(chain, devnet, SimulatorParams(seed=5, step_seconds=60))
    assert sim.run(steps=12) == 12  # ~12 minutes of chain time, every pool trading

    analysis(env="test", interval="1m", lookback=100_000)

    stored = load_candles("WETH/USDC", "1m", root=tmp_path / "candles")
    aggregate = stored.filter(pl.col("venue") == "all")
    assert aggregate.height >= 10, aggregate
    assert set(stored.get_column("venue").unique().to_list()) >= {"uniswap-v2", "sushiswap-v2",
                                                                  "uniswap-v3", "all"}
    assert int(aggregate.get_column("trades").sum()) >= 12 * 4  # four WETH/USDC pools a step
