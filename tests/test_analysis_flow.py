"""The analysis flow under a real Prefect server: candles -> models mapped per pair -> signals
in the ledger -> a table artifact of signals and a markdown summary of the market."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from dexpilot.config import AppConfig
from dexpilot.ledger import Ledger, SignalRow
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
