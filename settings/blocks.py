"""The Prefect Block that holds one environment, and the functions flows call to load it.

Block type ``dexpilot-environment``; documents ``dev``, ``test`` and ``prod``. A document holds
the validated ``AppConfig`` and, only if the operator pushed with ``store_key=True``, the
hot-wallet key as a ``SecretStr`` field (masked in the API and UI). By default the key stays
in the environment / ``.env`` or a Prefect Secret block and the document holds only their
names (``config.wallets.hot_key_env`` / ``hot_key_secret_block``).

Flows take the environment name and call ``load_settings(env)`` (``aload_settings`` in async
code); the task that signs calls ``load_hot_wallet_key(env)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from dexpilot.config import AppConfig, HotWalletKey
from dexpilot.errors import ConfigError
from settings.checks import CheckReport, check_environment
from settings.files import check_env_name
from settings.secrets import resolve_hot_wallet_key

BLOCK_TYPE_SLUG = "dexpilot-environment"


class DexpilotEnvironment(Block):
    """One dexpilot environment (dev, test or prod): chain, venues, wallets, risk limits."""

    _block_type_name = "Dexpilot Environment"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = (
        "One dexpilot environment: chain, tokens, venues, pools, wallet addresses, risk limits, "
        "strategy, ledger and metrics. Written by `dexpilot settings push ENV`."
    )

    env: Literal["dev", "test", "prod"] = Field(description="environment name")
    config: AppConfig = Field(description="the validated environment configuration")
    hot_wallet_key: SecretStr | None = Field(
        default=None,
        description="hot-wallet key, only if pushed with --store-key; normally it stays in the "
        "environment variable or Secret block named in config.wallets",
    )
    sources: list[str] = Field(default_factory=list, description="files it was built from")
    pushed_at: str = Field(default="", description="when it was pushed (UTC, ISO 8601)")


@dataclass(frozen=True)
class PushResult:
    block: DexpilotEnvironment
    report: CheckReport


def push_settings(
    env: str,
    *,
    root: Path | str | None = None,
    store_key: bool = False,
    rpc: bool = True,
    key: bool = True,
) -> PushResult:
    """Check ``env`` completely, then save (overwrite) its block; nothing is saved on error."""
    if store_key and not key:
        raise ConfigError("--store-key needs the key check: the key to store must be verified")
    report = check_environment(env, root=root, rpc=rpc, key=key)
    stored = (
        SecretStr(report.key.get_secret_value()) if store_key and report.key is not None else None
    )
    block = DexpilotEnvironment(
        env=report.config.env,
        config=report.config,
        hot_wallet_key=stored,
        sources=report.loaded.sources,
        pushed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    block.save(env, overwrite=True, _sync=True)  # type: ignore[call-arg]
    return PushResult(block, report)


def load_environment(env: str) -> DexpilotEnvironment:
    """The saved block of ``env``; ``ConfigError`` if it was never pushed."""
    check_env_name(env)
    try:
        block: DexpilotEnvironment = DexpilotEnvironment.load(  # type: ignore[call-arg,assignment]
            env, _sync=True
        )
    except ValueError as exc:
        raise _not_pushed(env, exc) from None
    return block


async def aload_environment(env: str) -> DexpilotEnvironment:
    check_env_name(env)
    try:
        block: DexpilotEnvironment = await DexpilotEnvironment.aload(env)
    except ValueError as exc:
        raise _not_pushed(env, exc) from None
    return block


def load_settings(env: str) -> AppConfig:
    """The ``AppConfig`` of ``env`` as pushed: what flows call with their environment name."""
    return load_environment(env).config


async def aload_settings(env: str) -> AppConfig:
    return (await aload_environment(env)).config


def load_hot_wallet_key(env: str, *, root: Path | str | None = None) -> HotWalletKey:
    """The checked hot-wallet key of ``env`` (environment variable, block, or Secret block)."""
    block = load_environment(env)
    return resolve_hot_wallet_key(block.config, root=root, stored=block.hot_wallet_key)


def settings_pushed(env: str) -> bool:
    """True if a block document for ``env`` exists."""
    try:
        load_environment(env)
    except ConfigError:
        return False
    return True


def _not_pushed(env: str, exc: Exception) -> ConfigError:
    text = str(exc)
    if "Unable to find block document" in text or "not found" in text.lower():
        return ConfigError(
            f"no settings pushed for environment {env!r} (no {BLOCK_TYPE_SLUG} block named "
            f"{env!r}): run `dexpilot settings push {env}`"
        )
    return ConfigError(f"the {BLOCK_TYPE_SLUG} block {env!r} could not be loaded: {_short(text)}")


def _short(text: Any) -> str:
    s = str(text)
    return s if len(s) <= 500 else s[:500] + "..."
