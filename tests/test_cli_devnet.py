"""`dexpilot devnet up|status|summary|down` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dexpilot.chain import devnet as devnet_module
from dexpilot.chain.anvil import PROJECT_ROOT
from dexpilot_cli.main import app


@pytest.mark.chain  # `devnet up` starts anvil
def test_up_status_summary_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXPILOT_DEVNET_DIR", str(tmp_path))
    # Share the deployed-market cache with the rest of the suite so nothing is redeployed.
    shared_cache = PROJECT_ROOT / ".devnet" / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache").symlink_to(shared_cache)
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["devnet", "up"])
        assert result.exit_code == 0, result.output
        assert "started" in result.output
        assert (tmp_path / "manifest.json").exists()
        again = runner.invoke(app, ["devnet", "up"])
        assert "already running" in again.output
        status = runner.invoke(app, ["devnet", "status"])
        assert status.exit_code == 0 and "12 pools on 3 venues" in status.output
        summary = runner.invoke(app, ["devnet", "summary"])
        assert summary.exit_code == 0
        assert "WETH/USDC" in summary.output and "sushiswap-v2" in summary.output
    finally:
        down = runner.invoke(app, ["devnet", "down"])
    assert "stopped" in down.output
    assert devnet_module.running(tmp_path) is None
    status = runner.invoke(app, ["devnet", "status"])
    assert status.exit_code == 1 and "not running" in status.output
