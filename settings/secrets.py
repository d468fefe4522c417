"""The hot-wallet (wallet A) key: found, checked against ``wallets.hot``, and kept masked.

Where it comes from, first match wins:

1. the environment variable named by ``wallets.hot_key_env`` (or that entry in ``.env``);
2. the key stored in the environment's own Prefect block, if the operator chose
   ``dexpilot settings push ENV --store-key`` (passed in as ``stored``);
3. the Prefect Secret block named by ``wallets.hot_key_secret_block``.

Every message names the variable or block and the addresses involved, never the key. Prefect is
imported only when a Secret block has to be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dexpilot.config import AppConfig, HotWalletKey, parse_hot_wallet_key
from dexpilot.errors import ConfigError
from settings.files import DOTENV_NAME, project_root, read_environ


def resolve_hot_wallet_key(
    config: AppConfig,
    *,
    root: Path | str | None = None,
    stored: SecretStr | None = None,
) -> HotWalletKey:
    """The hot-wallet key for ``config``, checked to be wallet A's key; ``ConfigError`` if not."""
    wallets = config.wallets
    expected = wallets.hot
    var = wallets.hot_key_env
    value = read_environ(root).get(var)
    if value:
        return parse_hot_wallet_key(
            value, expected_address=expected, source=f"environment variable {var}"
        )
    if stored is not None:
        return parse_hot_wallet_key(
            stored.get_secret_value(),
            expected_address=expected,
            source=f"the key stored in the Prefect block of environment {config.env!r}",
        )
    dotenv = project_root(root) / DOTENV_NAME
    tried = f"environment variable {var} is not set (nor in {dotenv})"
    if wallets.hot_key_secret_block is None:
        raise ConfigError(
            f"wallets.hot_key_env: the hot-wallet key is missing: {tried}, and "
            "wallets.hot_key_secret_block names no Prefect Secret block"
        )
    block = wallets.hot_key_secret_block
    raw = _read_secret_block(block, tried)
    return parse_hot_wallet_key(
        raw, expected_address=expected, source=f"Prefect Secret block {block!r}"
    )


def _read_secret_block(name: str, tried: str) -> str:
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        raise ConfigError(
            f"wallets.hot_key_secret_block: the hot-wallet key is missing: {tried}, and the "
            f"Prefect Secret block {name!r} does not exist"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"wallets.hot_key_secret_block: could not read Prefect Secret block {name!r}: "
            f"{type(exc).__name__}"
        ) from None
    secret = block.value.get_secret_value()
    if not isinstance(secret, str):
        raise ConfigError(
            f"wallets.hot_key_secret_block: Prefect Secret block {name!r} holds a "
            f"{type(secret).__name__}, not a key string"
        )
    return secret
