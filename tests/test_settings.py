"""Settings per environment: files + .env + manifest -> AppConfig -> Prefect block, and back.

Every test builds its own project root in tmp_path (copies of the shipped settings/*.toml, a
manifest written here, its own .env), so neither the developer's .env nor the real dev chain
matters. Prefect tests share the session's test server (tests/fixtures/prefect.py).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from dexpilot.chain.anvil import AnvilProcess
from dexpilot.chain.manifest import DevnetManifest
from dexpilot.config import AppConfig, HotWalletKey, parse_hot_wallet_key
from dexpilot.errors import ConfigError
from dexpilot_cli.settings import app as settings_app
from settings.checks import check_environment
from settings.files import load_config, read_environment
from settings.secrets import resolve_hot_wallet_key

REPO = Path(__file__).resolve().parents[1]
# anvil's account #1: a public test key (the dev chain's wallet A).
DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEV_HOT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BLOCK_SLUG = "dexpilot-environment"


def _addr() -> str:
    return str(Account.create().address)


def _hex_body(key: str) -> str:
    return key.removeprefix("0x").lower()


def manifest_data(*, chain_id: int = 31337, rpc_url: str = "http://127.0.0.1:1") -> dict[str, Any]:
    tokens = [
        {"symbol": s, "address": _addr(), "decimals": d}
        for s, d in (("WETH", 18), ("USDC", 6), ("WBTC", 8), ("UNI", 18))
    ]
    venues = [
        {"name": "uniswap-v2", "kind": "uniswap_v2", "factory": _addr(), "router": _addr()},
        {"name": "sushiswap-v2", "kind": "uniswap_v2", "factory": _addr(), "router": _addr()},
        {"name": "uniswap-v3", "kind": "uniswap_v3", "factory": _addr(), "router": _addr(),
         "quoter": _addr(), "position_manager": _addr()},
    ]
    pools = [
        {"venue": "uniswap-v2", "kind": "v2", "address": _addr(), "token0": "USDC",
         "token1": "WETH", "fee_ppm": 3000},
        {"venue": "sushiswap-v2", "kind": "v2", "address": _addr(), "token0": "USDC",
         "token1": "WETH", "fee_ppm": 3000},
        {"venue": "uniswap-v3", "kind": "v3", "address": _addr(), "token0": "USDC",
         "token1": "WETH", "fee_ppm": 500},
    ]
    data: dict[str, Any] = {
        "chain_id": chain_id, "rpc_url": rpc_url, "fingerprint": "test-fixture",
        "multicall": _addr(), "weth": "WETH", "tokens": tokens, "venues": venues,
        "pools": pools, "hot_wallet": DEV_HOT, "cold_wallet": _addr(), "deployer": _addr(),
    }
    if "noise_traders" in DevnetManifest.model_fields:  # the deployer adds this field
        data["noise_traders"] = []
    return data


def write_manifest(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own DEXPILOT_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("DEXPILOT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root: shipped settings files, a manifest for `dev`/`test`, a .env with the key."""
    base = tmp_path / "project"
    (base / "settings").mkdir(parents=True)
    for env in ("dev", "test", "prod"):
        shutil.copy(REPO / "settings" / f"{env}.toml", base / "settings" / f"{env}.toml")
    (base / ".devnet").mkdir()
    write_manifest(base / ".devnet" / "manifest.json", manifest_data())
    (base / ".env").write_text(f"DEXPILOT_HOT_WALLET_KEY={DEV_KEY}\n")
    return base


def edit(root: Path, env: str, old: str, new: str) -> None:
    path = root / "settings" / f"{env}.toml"
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def config_error(env: str, root: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        check_environment(env, root=root, **kwargs)
    return str(info.value)


PROD_VARS = {
    "DEXPILOT_PROD_RPC_URLS": "https://rpc-1.example.invalid/v3/apikey123,https://rpc-2.example.invalid",
    "DEXPILOT_PROD_COLD_WALLET": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "DEXPILOT_PROD_LEDGER_URL": "postgresql+psycopg://dexpilot@db.example.invalid/dexpilot",
}


@pytest.fixture
def prod_key(monkeypatch: pytest.MonkeyPatch) -> str:
    account = Account.create()
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEXPILOT_PROD_HOT_WALLET", account.address)
    return "0x" + _hex_body(account.key.hex())


# -- files -> AppConfig ---------------------------------------------------------------------------
def test_dev_and_test_load_from_manifest_without_side_effects(root: Path) -> None:
    before_files = sorted(p.relative_to(root) for p in root.rglob("*"))
    before_env = dict(os.environ)
    for env in ("dev", "test"):
        config = load_config(env, root=root)
        assert config.env == env
        assert config.chain.chain_id == 31337
        assert config.wallets.hot == DEV_HOT
        assert [t.symbol for t in config.tokens] == ["WETH", "USDC", "WBTC", "UNI"]
        assert config.risk.max_trade_quote <= config.risk.working_capital_quote
        key = resolve_hot_wallet_key(config, root=root)
        assert key.address == DEV_HOT
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before_files
    assert dict(os.environ) == before_env  # .env was read, not loaded into the process


def test_test_env_points_at_its_own_manifest(root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    other = write_manifest(tmp_path / "other.json", manifest_data(rpc_url="http://127.0.0.1:2"))
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(other))
    monkeypatch.setenv("DEXPILOT_LEDGER_URL", "sqlite:///" + str(tmp_path / "ledger.db"))
    loaded = read_environment("test", root=root)
    assert loaded.config.chain.rpc_urls == ["http://127.0.0.1:2"]
    assert loaded.config.ledger.url.endswith("ledger.db")
    assert loaded.manifest_file == other
    # dev ignores DEXPILOT_MANIFEST: it always reads the dev chain's own manifest
    assert load_config("dev", root=root).chain.rpc_urls == ["http://127.0.0.1:1"]


def test_shipped_prod_settings_are_valid(prod_key: str, root: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXPILOT_PROD_HOT_WALLET_KEY", prod_key)
    report = check_environment("prod", root=root, rpc=False)
    config = report.config
    assert config.chain.chain_id == 1
    assert config.chain.rpc_urls == PROD_VARS["DEXPILOT_PROD_RPC_URLS"].split(",")
    assert config.token("USDC").decimals == 6 and config.token("WBTC").decimals == 8
    v3 = next(v for v in config.venues if v.name == "uniswap-v3")
    assert v3.router == "0xE592427A0AeCE92de3EDaEc1E68A9ddD1a6c5EE7"
    assert report.key is not None and report.key.source == (
        "environment variable DEXPILOT_PROD_HOT_WALLET_KEY")
    assert report.skipped == ("RPC chain id",)


def test_prod_missing_variable_names_it(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_config("prod", root=root)
    msg = str(info.value)
    assert "wallets.hot: environment variable DEXPILOT_PROD_HOT_WALLET is not set" in msg
    assert "DEXPILOT_PROD_RPC_URLS" not in msg


# -- bad config -> a message naming the field ------------------------------------------------------
def test_unknown_environment_lists_known_ones(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'staging'.*dev, test, prod"):
        load_config("staging", root=root)


def test_malformed_address(prod_key: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXPILOT_PROD_HOT_WALLET", "0xabc")
    msg = config_error("prod", root, rpc=False, key=False)
    assert "wallets.hot: '0xabc' is not an Ethereum address" in msg
    assert "from ${DEXPILOT_PROD_HOT_WALLET}" in msg


def test_malformed_address_in_manifest(root: Path) -> None:
    data = manifest_data()
    data["tokens"][1]["address"] = "0x12345"
    write_manifest(root / ".devnet" / "manifest.json", data)
    msg = config_error("dev", root, rpc=False)
    assert "tokens[1].address: '0x12345' is not an Ethereum address" in msg
    assert "symbol 'USDC'" in msg


def test_non_checksummed_address(prod_key: str, root: Path) -> None:
    edit(root, "prod", 'address = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"',
         'address = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"')
    msg = config_error("prod", root, rpc=False, key=False)
    assert "tokens[1].address: '0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48' is not EIP-55" in msg
    assert "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48" in msg  # says how to write it


def test_missing_key_variable(root: Path) -> None:
    (root / ".env").write_text("")
    msg = config_error("dev", root, rpc=False)
    assert "wallets.hot_key_env" in msg
    assert "DEXPILOT_HOT_WALLET_KEY is not set" in msg


def test_key_not_matching_wallet_a(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Account.create()
    other_key = "0x" + _hex_body(other.key.hex())
    monkeypatch.setenv("DEXPILOT_HOT_WALLET_KEY", other_key)  # the process env beats .env
    msg = config_error("dev", root, rpc=False)
    assert "wallets.hot" in msg and other.address in msg and DEV_HOT in msg
    assert _hex_body(other_key) not in msg.lower()


def test_malformed_key_is_not_echoed(root: Path) -> None:
    bad = "0x" + "zz" + DEV_KEY[4:]
    (root / ".env").write_text(f"DEXPILOT_HOT_WALLET_KEY={bad}\n")
    msg = config_error("dev", root, rpc=False)
    assert "environment variable DEXPILOT_HOT_WALLET_KEY: not a private key" in msg
    assert DEV_KEY[6:] not in msg


def test_negative_limit(root: Path) -> None:
    edit(root, "dev", "daily_loss_limit_quote = 2_000_000_000", "daily_loss_limit_quote = -5")
    msg = config_error("dev", root, rpc=False)
    assert "risk.daily_loss_limit_quote: Input should be greater than or equal to 0 (got -5)" in msg


def test_inconsistent_limits(root: Path) -> None:
    edit(root, "test", "max_trade_quote = 2_000_000_000", "max_trade_quote = 200_000_000_000")
    msg = config_error("test", root, rpc=False)
    assert "risk.max_trade_quote: 200000000000 exceeds" in msg


def test_max_trade_above_working_capital(root: Path) -> None:
    edit(root, "dev", "max_trade_quote = 5_000_000_000", "max_trade_quote = 210_000_000_000")
    msg = config_error("dev", root, rpc=False)
    assert "risk.max_trade_quote: 210000000000 exceeds working_capital_quote (150000000000)" in msg


def test_unknown_token_in_pool(root: Path) -> None:
    data = manifest_data()
    data["pools"][2]["token1"] = "DOGE"
    write_manifest(root / ".devnet" / "manifest.json", data)
    msg = config_error("dev", root, rpc=False)
    assert "pools[2].token1: unknown token 'DOGE'" in msg


def test_unknown_field_and_manifest_conflict(root: Path) -> None:
    edit(root, "dev", "[risk]\n", "[risk]\nmax_trade_usd = 5\n")
    assert "risk.max_trade_usd: unknown field" in config_error("dev", root, rpc=False)
    edit(root, "dev", "max_trade_usd = 5\n", "")
    edit(root, "dev", "[chain]\n", "[chain]\nchain_id = 1\n")
    assert "chain.chain_id: set by the dev chain manifest" in config_error("dev", root, rpc=False)


def test_missing_manifest(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(tmp_path / "nowhere.json"))
    assert "nowhere.json not found" in config_error("test", root, rpc=False)


def test_private_key_pasted_into_settings_is_never_echoed(root: Path) -> None:
    edit(root, "dev", 'hot_key_env = "DEXPILOT_HOT_WALLET_KEY"', f'hot_key_env = "{DEV_KEY}"')
    msg = config_error("dev", root, rpc=False)
    assert "wallets.hot_key_env: looks like a private key" in msg
    assert _hex_body(DEV_KEY) not in msg.lower()
    edit(root, "dev", f'hot_key_env = "{DEV_KEY}"', f'hot_key = "{DEV_KEY}"')
    msg = config_error("dev", root, rpc=False)
    assert "wallets.hot_key: unknown field" in msg
    assert _hex_body(DEV_KEY) not in msg.lower()


@pytest.mark.chain
def test_chain_id_checked_against_a_real_anvil(root: Path) -> None:
    anvil = AnvilProcess.start(chain_id=31337)
    try:
        write_manifest(root / ".devnet" / "manifest.json", manifest_data(rpc_url=anvil.url))
        report = check_environment("dev", root=root)
        assert report.rpc_chain_ids == ((anvil.url, 31337),)
        write_manifest(root / ".devnet" / "manifest.json",
                       manifest_data(chain_id=1, rpc_url=anvil.url))
        msg = config_error("dev", root)
        assert f"chain.chain_id: is 1 but chain.rpc_urls[0] ({anvil.url}) is chain 31337" in msg
    finally:
        anvil.stop()
    msg = config_error("dev", root)  # the endpoint is gone now
    assert "chain.rpc_urls[0]" in msg and "did not answer" in msg


# -- the key object -------------------------------------------------------------------------------
def test_hot_wallet_key_is_masked() -> None:
    key = parse_hot_wallet_key(DEV_KEY, expected_address=DEV_HOT, source="test")
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert _hex_body(DEV_KEY) not in text.lower() and "**********" in text
    assert key.get_secret_value() == DEV_KEY and key.account().address == DEV_HOT
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert isinstance(key, HotWalletKey)


# -- CLI without Prefect ------------------------------------------------------------
def test_cli_check_ok_and_error(root: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(settings_app, ["check", "dev", "--root", str(root), "--skip-rpc"])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output and DEV_HOT in ok.output and "nothing was written" in ok.output
    assert _hex_body(DEV_KEY) not in ok.output.lower()
    edit(root, "dev", "max_trade_quote = 5_000_000_000", "max_trade_quote = -1")
    bad = runner.invoke(settings_app, ["check", "dev", "--root", str(root), "--skip-rpc"])
    assert bad.exit_code == 1
    assert "risk.max_trade_quote" in bad.output and "Traceback" not in bad.output
    unknown = runner.invoke(settings_app, ["check", "qa", "--root", str(root)])
    assert unknown.exit_code == 1 and "known environments are dev, test, prod" in unknown.output


# -- Prefect block ------------------------------------------------------------
def _read_document(name: str, *, include_secrets: bool) -> dict[str, Any] | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            doc = client.read_block_document_by_name(
                name, block_type_slug=BLOCK_SLUG, include_secrets=include_secrets
            )
        except ObjectNotFound:
            return None
    return dict(doc.data)


@pytest.mark.prefect
def test_push_then_load_round_trip_without_the_key(
    prefect_server: Any, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    from settings.blocks import load_hot_wallet_key, load_settings, push_settings

    caplog.set_level(logging.DEBUG)
    own = write_manifest(tmp_path / "own-chain.json", manifest_data(rpc_url="http://127.0.0.1:3"))
    monkeypatch.setenv("DEXPILOT_MANIFEST", str(own))
    expected = load_config("test", root=root)

    runner = CliRunner()
    result = runner.invoke(settings_app, ["push", "test", "--root", str(root), "--skip-rpc"])
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and "not stored in the block" in result.output

    loaded = load_settings("test")
    assert isinstance(loaded, AppConfig) and loaded == expected
    for include_secrets in (False, True):
        doc = _read_document("test", include_secrets=include_secrets)
        assert doc is not None and doc["config"]["wallets"]["hot"] == DEV_HOT
        assert doc.get("hot_wallet_key") is None
        assert _hex_body(DEV_KEY) not in json.dumps(doc).lower()
    assert load_hot_wallet_key("test", root=root).address == DEV_HOT

    shown = runner.invoke(settings_app, ["show", "test"])
    assert shown.exit_code == 0 and DEV_HOT in shown.output, shown.output
    as_json = runner.invoke(settings_app, ["show", "test", "--json"])
    assert json.loads(as_json.output)["wallets"]["hot"] == DEV_HOT

    # The operator may choose to keep the key in the block: masked unless secrets are asked for.
    stored = push_settings("test", root=root, rpc=False, store_key=True)
    assert stored.block.hot_wallet_key is not None
    masked = _read_document("test", include_secrets=False)
    assert masked is not None and _hex_body(DEV_KEY) not in json.dumps(masked).lower()
    (root / ".env").write_text("")  # no variable: the stored key is used
    key = load_hot_wallet_key("test", root=root)
    assert key.address == DEV_HOT and "stored in the Prefect block" in key.source
    push_settings("test", root=root, rpc=False, key=False)  # back to a reference only
    assert _read_document("test", include_secrets=True)["hot_wallet_key"] is None  # type: ignore[index]

    captured = capfd.readouterr()
    for text in (caplog.text, captured.out, captured.err, result.output, shown.output,
                 as_json.output):
        assert _hex_body(DEV_KEY) not in text.lower()


@pytest.mark.prefect
def test_check_writes_no_block(prefect_server: Any, root: Path) -> None:
    from settings.blocks import load_settings, settings_pushed

    assert _read_document("dev", include_secrets=False) is None
    result = CliRunner().invoke(settings_app, ["check", "dev", "--root", str(root), "--skip-rpc"])
    assert result.exit_code == 0, result.output
    assert _read_document("dev", include_secrets=False) is None
    assert not settings_pushed("dev")
    with pytest.raises(ConfigError, match=r"no settings pushed for environment 'dev'.*push dev"):
        load_settings("dev")
    shown = CliRunner().invoke(settings_app, ["show", "dev"])
    assert shown.exit_code == 1 and "dexpilot settings push dev" in shown.output


@pytest.mark.prefect
def test_failed_push_writes_nothing(prefect_server: Any, root: Path) -> None:
    (root / ".env").write_text("")
    result = CliRunner().invoke(settings_app, ["push", "dev", "--root", str(root), "--skip-rpc"])
    assert result.exit_code == 1 and "DEXPILOT_HOT_WALLET_KEY is not set" in result.output
    assert _read_document("dev", include_secrets=False) is None


@pytest.mark.prefect
def test_prod_key_from_a_prefect_secret_block(
    prefect_server: Any, prod_key: str, root: Path
) -> None:
    from prefect.blocks.system import Secret

    msg = config_error("prod", root, rpc=False)
    assert "DEXPILOT_PROD_HOT_WALLET_KEY is not set" in msg
    assert "Prefect Secret block 'dexpilot-prod-hot-wallet-key' does not exist" in msg

    Secret(value=prod_key).save("dexpilot-prod-hot-wallet-key", overwrite=True)
    report = check_environment("prod", root=root, rpc=False)
    assert report.key is not None
    assert report.key.source == "Prefect Secret block 'dexpilot-prod-hot-wallet-key'"
    assert report.key.address == os.environ["DEXPILOT_PROD_HOT_WALLET"]

    result = CliRunner().invoke(settings_app, ["check", "prod", "--root", str(root), "--skip-rpc"])
    assert result.exit_code == 0, result.output
    assert _hex_body(prod_key) not in result.output.lower()
    assert "apikey123" not in result.output  # RPC URL paths are not shown
