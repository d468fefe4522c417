"""Config checked against the chain: ``settings check --chain`` and every trading runtime's start.

Each bad config is the dev chain's own manifest with one thing wrong, loaded through the real
`test` settings (``DEXPILOT_MANIFEST``), checked against the real anvil dev chain with the real
Uniswap contracts on it: no mocks of the chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from dexpilot.chain.config_audit import audit_config
from dexpilot.chain.deployer import Deployer
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig
from dexpilot.errors import ConfigError, SystemFault
from dexpilot.execution.wallet import HotWallet
from dexpilot.ledger import ErrorRow, Ledger, OrderStatus
from dexpilot.state import BotState
from dexpilot.trading.cycle import TradingRuntime, run_cycle
from dexpilot_cli.main import app
from settings.checks import check_environment
from settings.files import load_config
from tests.fixtures.chain import ANVIL_KEY_1
from tests.test_trading_cycle import _push

pytestmark = pytest.mark.chain

NO_CODE = "0x000000000000000000000000000000000000dEaD"
Edit = Callable[[dict[str, Any]], None]


def _with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devnet: DevnetManifest,
          edit: Edit) -> None:
    """Point the `test` settings at a copy of the dev chain's manifest with ``edit`` applied."""
    data = devnet.model_dump(mode="json")
    edit(data)
    path = tmp_path / "edited-manifest.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(path))


def _chain_check_error() -> str:
    with pytest.raises(ConfigError) as err:
        check_environment("test", key=False, chain=True)
    return str(err.value)


def _token(data: dict[str, Any], symbol: str) -> dict[str, Any]:
    return next(t for t in data["tokens"] if t["symbol"] == symbol)


def _token_index(data: dict[str, Any], symbol: str) -> int:
    return next(i for i, t in enumerate(data["tokens"]) if t["symbol"] == symbol)


def _pool_index(data: dict[str, Any], venue: str, pair: str, fee: int | None = None) -> int:
    t0, t1 = pair.split("/")
    return next(i for i, p in enumerate(data["pools"])
                if p["venue"] == venue and (p["token0"], p["token1"]) == (t0, t1)
                and (fee is None or p["fee_ppm"] == fee))


def _venue(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in data["venues"] if v["name"] == name)


def _venue_index(data: dict[str, Any], name: str) -> int:
    return next(i for i, v in enumerate(data["venues"]) if v["name"] == name)


# -- settings check --chain --------------------------------------------------------------------
def test_the_dev_config_passes_in_one_round_trip(test_env: AppConfig, chain: RpcClient) -> None:
    report = check_environment("test", key=False, chain=True)
    assert report.chain_audit is not None and report.chain_audit.ok
    with RpcClient(test_env.chain.rpc_urls) as client:
        audit = audit_config(test_env, client)
        assert audit.problems == ()
        # code of every address + every read, in one JSON-RPC batch
        assert audit.round_trips == client.round_trips == 1
    assert audit.addresses == len(test_env.tokens) + len(test_env.pools) + 1 + sum(
        sum(getattr(v, f) is not None for f in ("factory", "router", "quoter", "position_manager"))
        for v in test_env.venues)


def test_token_with_no_code(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i = _token_index(data, "UNI")
    _with(tmp_path, monkeypatch, devnet, lambda d: _token(d, "UNI").update(address=NO_CODE))
    message = _chain_check_error()
    assert f"tokens[{i}].address: no contract at {NO_CODE}" in message
    assert "config says it is UNI" in message


def test_wrong_decimals(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i, usdc = _token_index(data, "USDC"), _token(data, "USDC")["address"]
    _with(tmp_path, monkeypatch, devnet, lambda d: _token(d, "USDC").update(decimals=18))
    message = _chain_check_error()
    assert f"tokens[{i}].decimals: config says 18, the token at {usdc} says 6" in message
    assert "1 problem;" in message  # nothing else is blamed


def test_wrong_symbol(test_env: AppConfig, chain: RpcClient, devnet: DevnetManifest,
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Deployer(chain).deploy("DevToken", "Not Uniswap", "UNX", 18).address
    data = devnet.model_dump(mode="json")
    i = _token_index(data, "UNI")

    def edit(d: dict[str, Any]) -> None:
        _token(d, "UNI").update(address=other)
        d["pools"] = [p for p in d["pools"] if "UNI" not in (p["token0"], p["token1"])]

    _with(tmp_path, monkeypatch, devnet, edit)
    message = _chain_check_error()
    assert f"tokens[{i}].symbol: config says 'UNI', the token at {other} says 'UNX'" in message
    assert "1 problem;" in message


def test_pool_of_the_wrong_pair(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i = _pool_index(data, "uniswap-v2", "WETH/USDC")
    wbtc_pool = data["pools"][_pool_index(data, "uniswap-v2", "WETH/WBTC")]["address"]
    usdc, wbtc = _token(data, "USDC")["address"], _token(data, "WBTC")["address"]

    def edit(d: dict[str, Any]) -> None:
        d["pools"][i]["address"] = wbtc_pool  # the WETH/WBTC pair, filed as WETH/USDC
        del d["pools"][_pool_index(d, "uniswap-v2", "WETH/WBTC")]

    _with(tmp_path, monkeypatch, devnet, edit)
    message = _chain_check_error()
    assert (f"pools[{i}].token1: config says USDC ({usdc}), the pool at {wbtc_pool} has "
            f"token1 WBTC ({wbtc})") in message


def test_token0_and_token1_swapped(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i = _pool_index(data, "sushiswap-v2", "WETH/USDC")
    address = data["pools"][i]["address"]
    _with(tmp_path, monkeypatch, devnet,
          lambda d: d["pools"][i].update(token0="USDC", token1="WETH"))
    message = _chain_check_error()
    assert f"pools[{i}].token0: config says token0 USDC, token1 WETH; the pool at {address}" \
           in message
    assert "token0 and token1 are swapped" in message
    assert "1 problem;" in message


def test_v2_pool_filed_under_the_other_v2_venue(test_env: AppConfig, devnet: DevnetManifest,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i = _pool_index(data, "uniswap-v2", "WETH/USDC")
    address = data["pools"][i]["address"]
    sushi_pool = data["pools"][_pool_index(data, "sushiswap-v2", "WETH/USDC")]["address"]
    sushi_factory = _venue(data, "sushiswap-v2")["factory"]
    uni_factory = _venue(data, "uniswap-v2")["factory"]

    def edit(d: dict[str, Any]) -> None:
        del d["pools"][_pool_index(d, "sushiswap-v2", "WETH/USDC")]  # one pool per pair
        d["pools"][i]["venue"] = "sushiswap-v2"

    _with(tmp_path, monkeypatch, devnet, edit)
    message = _chain_check_error()
    assert (f"pools[{i}].venue: config files the pool {address} under sushiswap-v2, but "
            f"sushiswap-v2's factory {sushi_factory} getPair(WETH/USDC) returns pool "
            f"{sushi_pool}") in message
    assert f"created by factory {uni_factory} (venue uniswap-v2)" in message


def test_v3_pool_with_the_wrong_fee(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    i = _pool_index(data, "uniswap-v3", "WETH/USDC", fee=500)
    address = data["pools"][i]["address"]

    def edit(d: dict[str, Any]) -> None:
        del d["pools"][_pool_index(d, "uniswap-v3", "WETH/USDC", fee=3000)]
        d["pools"][i]["fee_ppm"] = 3000

    _with(tmp_path, monkeypatch, devnet, edit)
    message = _chain_check_error()
    assert f"pools[{i}].fee_ppm: config says 3000, the pool at {address} has fee 500" in message


def test_router_and_factory_with_no_code(test_env: AppConfig, devnet: DevnetManifest,
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    uni, sushi = _venue_index(data, "uniswap-v2"), _venue_index(data, "sushiswap-v2")

    def edit(d: dict[str, Any]) -> None:
        _venue(d, "uniswap-v2")["router"] = NO_CODE
        _venue(d, "sushiswap-v2")["factory"] = "0x000000000000000000000000000000000000bEEF"

    _with(tmp_path, monkeypatch, devnet, edit)
    message = _chain_check_error()
    assert f"venues[{uni}].router: no contract at {NO_CODE}" in message
    assert (f"venues[{sushi}].factory: no contract at "
            "0x000000000000000000000000000000000000bEEF") in message


def test_router_of_another_venue(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = devnet.model_dump(mode="json")
    j = _venue_index(data, "uniswap-v2")
    sushi = _venue(data, "sushiswap-v2")
    _with(tmp_path, monkeypatch, devnet,
          lambda d: _venue(d, "uniswap-v2").update(router=sushi["router"]))
    message = _chain_check_error()
    assert (f"venues[{j}].router: the router at {sushi['router']} belongs to factory "
            f"{sushi['factory']} (venue sushiswap-v2)") in message


def test_multicall_with_no_code_or_not_a_multicall(test_env: AppConfig, devnet: DevnetManifest,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _with(tmp_path, monkeypatch, devnet, lambda d: d.update(multicall=NO_CODE))
    assert f"chain.multicall: no contract at {NO_CODE}" in _chain_check_error()
    weth = next(t for t in devnet.tokens if t.symbol == "WETH").address
    _with(tmp_path, monkeypatch, devnet, lambda d: d.update(multicall=weth))
    message = _chain_check_error()
    assert f"chain.multicall: the contract at {weth} is not a working multicall" in message
    assert "1 problem;" in message  # nothing else could be read: nothing else is blamed


def test_cli_check_chain(test_env: AppConfig, devnet: DevnetManifest, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["settings", "check", "test", "--chain", "--skip-key"])
    assert ok.exit_code == 0, ok.output
    assert "every contract matches the config" in ok.output and "1 round trip" in ok.output

    data = devnet.model_dump(mode="json")
    i, j = _token_index(data, "WBTC"), _pool_index(data, "uniswap-v2", "WETH/USDC")

    def edit(d: dict[str, Any]) -> None:
        _token(d, "WBTC")["decimals"] = 18
        d["pools"][j].update(token0="USDC", token1="WETH")

    _with(tmp_path, monkeypatch, devnet, edit)
    bad = runner.invoke(app, ["settings", "check", "test", "--chain", "--skip-key"])
    assert bad.exit_code == 1
    output = " ".join(bad.output.split())  # rich wraps long lines
    assert "do not match the chain (2 problems" in output
    assert f"tokens[{i}].decimals: config says 18" in output and "says 8" in output
    assert f"pools[{j}].token0" in output and "Traceback" not in output
    # without --chain the same settings are valid, as before
    plain = runner.invoke(app, ["settings", "check", "test", "--skip-key"])
    assert plain.exit_code == 0, plain.output
    refused = runner.invoke(app, ["settings", "check", "test", "--chain", "--skip-rpc"])
    assert refused.exit_code == 1 and "--chain needs the RPC endpoints" in refused.output


# -- at the start of a trading runtime, and every snapshot --------------------------------------
@pytest.fixture
def build(test_env: AppConfig) -> Iterator[Callable[[], TradingRuntime]]:
    built: list[TradingRuntime] = []

    def _build() -> TradingRuntime:
        rt = TradingRuntime.build(load_config("test"), HotWallet(ANVIL_KEY_1))
        built.append(rt)
        return rt

    yield _build
    for rt in built:
        rt.close()


def _errors(ledger: Ledger, source: str) -> list[ErrorRow]:
    with ledger.session(write=False) as session:
        return list(session.exec(select(ErrorRow).where(ErrorRow.source == source)).all())


def _assert_arbitrage_trades(rt: TradingRuntime, chain: RpcClient, devnet: DevnetManifest,
                             cycle_id: str) -> None:
    _push(chain, devnet, "sushiswap-v2", "WETH/USDC", 1.02)
    report = run_cycle(rt, cycle_id)
    assert [e.status for e in report.executions] == [OrderStatus.FILLED] * 2, report
    assert rt.state.state is BotState.RUNNING


def test_a_token_with_no_code_is_quarantined_alone_and_the_rest_trades(
    build: Callable[[], TradingRuntime], chain: RpcClient, devnet: DevnetManifest,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _with(tmp_path, monkeypatch, devnet, lambda d: _token(d, "UNI").update(address=NO_CODE))
    rt = build()
    [quarantine] = rt.ledger.active_quarantines("test")
    assert (quarantine.token, quarantine.symbol, quarantine.source) == (NO_CODE, "UNI",
                                                                        "config_audit")
    errors = _errors(rt.ledger, "config_audit")
    [error] = [e for e in errors if e.message.startswith("token UNI")]
    assert error.kind == "config" and f"no contract at {NO_CODE}" in error.message
    # and each UNI pool, whose token1 is not the configured UNI, has its own row
    assert sum(e.message.startswith("pool ") and "WETH/UNI" in e.message for e in errors) == 3
    assert "its pools are left out: uniswap-v2 WETH/UNI" in error.message
    pools = rt.active_pools()
    assert pools and all("UNI" not in p.pair for p in pools)
    assert all("UNI" not in p.pair for v in rt.venues.values() for p in getattr(v, "pools", []))

    _assert_arbitrage_trades(rt, chain, devnet, "no-code")
    assert _errors(rt.ledger, "read_failure") == []  # already quarantined: no new row
    assert len(rt.ledger.active_quarantines("test")) == 1


def test_a_token_whose_balance_read_reverts_is_quarantined_at_run_time(
    build: Callable[[], TradingRuntime], chain: RpcClient, devnet: DevnetManifest,
) -> None:
    rt = build()
    assert rt.ledger.active_quarantines("test") == []
    uni = next(t for t in devnet.tokens if t.symbol == "UNI").address
    # UNI breaks after start: every call into it now reverts (PUSH0 PUSH0 REVERT).
    chain.request("anvil_setCode", [uni, "0x60006000fd"])

    _assert_arbitrage_trades(rt, chain, devnet, "reverting-balance")

    [quarantine] = rt.ledger.active_quarantines("test")
    assert (quarantine.token, quarantine.source) == (uni, "read_failure")
    [error] = _errors(rt.ledger, "read_failure")
    assert "balanceOf of UNI" in error.message and "reverted" in error.message
    assert all("UNI" not in p.pair for p in rt.active_pools())
    run_cycle(rt, "again")
    assert len(_errors(rt.ledger, "read_failure")) == 1, "one row per quarantine, not per cycle"
    # an operator clears it: its pools come back (and it is quarantined again while broken)
    rt.ledger.clear_quarantine(env="test", token=uni, actor="test", reason="looked at it")
    assert any("UNI" in p.pair for p in rt.active_pools())


def test_a_bad_pool_is_left_out_and_a_bad_venue_disabled(
    build: Callable[[], TradingRuntime], chain: RpcClient, devnet: DevnetManifest,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = devnet.model_dump(mode="json")
    v3_fee = _pool_index(data, "uniswap-v3", "WETH/USDC", fee=500)
    v3_address = data["pools"][v3_fee]["address"]

    def edit(d: dict[str, Any]) -> None:
        del d["pools"][_pool_index(d, "uniswap-v3", "WETH/USDC", fee=3000)]
        d["pools"][v3_fee]["fee_ppm"] = 3000
        _venue(d, "uniswap-v2")["router"] = NO_CODE

    _with(tmp_path, monkeypatch, devnet, edit)
    rt = build()
    assert "uniswap-v2" not in rt.venues and {"sushiswap-v2", "uniswap-v3"} <= set(rt.venues)
    pools = rt.active_pools()
    assert v3_address not in {p.address for p in pools}
    assert all(p.venue != "uniswap-v2" for p in pools)
    messages = [e.message for e in _errors(rt.ledger, "config_audit")]
    assert any(m.startswith("venue uniswap-v2 disabled:") and NO_CODE in m for m in messages)
    assert any(m.startswith(f"pool uniswap-v3 WETH/USDC ({v3_address}) left out:")
               and "has fee 500" in m for m in messages)
    assert rt.ledger.active_quarantines("test") == []  # no token was to blame
    report = run_cycle(rt, "bad-pool")
    assert rt.state.state is BotState.RUNNING, report


def test_a_wrong_multicall_stops_the_bot(
    build: Callable[[], TradingRuntime], devnet: DevnetManifest, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _with(tmp_path, monkeypatch, devnet, lambda d: d.update(multicall=NO_CODE))
    config = load_config("test")
    with pytest.raises(SystemFault, match=r"chain.multicall: no contract at"):
        TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    ledger = Ledger(config.ledger.url)
    try:
        assert ledger.latest_state("test") == BotState.ERROR.value
    finally:
        ledger.dispose()


def test_no_usable_venue_stops_the_bot(
    devnet: DevnetManifest, test_env: AppConfig, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def edit(d: dict[str, Any]) -> None:
        for venue in d["venues"]:
            venue["router"] = NO_CODE

    _with(tmp_path, monkeypatch, devnet, edit)
    with pytest.raises(SystemFault, match="no usable venue"):
        TradingRuntime.build(load_config("test"), HotWallet(ANVIL_KEY_1))
