"""Environment settings: ``dev``, ``test`` and ``prod``.

- ``settings/<env>.toml`` + ``.env`` (+ the dev chain manifest for dev/test) ->
  ``settings.files.load_config(env)`` -> a validated ``dexpilot.config.AppConfig``;
- ``settings.checks.check_environment(env)``: also the hot-wallet key and every RPC chain id;
- ``settings.blocks``: the Prefect Block ``DexpilotEnvironment`` (documents ``dev``, ``test``,
  ``prod``), ``push_settings(env)`` and ``load_settings(env)``, which flows call;
- ``settings.secrets.resolve_hot_wallet_key(config)``: the masked, checked hot-wallet key.

Importing this package does not import Prefect (~3 s); ``settings.blocks`` does. The names
below are importable from ``settings`` directly; the Prefect ones load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from settings.checks import CheckReport, check_environment, verify_rpc_chain_ids
from settings.files import LoadedEnvironment, load_config, read_environment
from settings.secrets import resolve_hot_wallet_key

if TYPE_CHECKING:
    from settings.blocks import (
        DexpilotEnvironment,
        aload_settings,
        load_environment,
        load_hot_wallet_key,
        load_settings,
        push_settings,
    )

_LAZY = {
    "DexpilotEnvironment",
    "aload_settings",
    "load_environment",
    "load_hot_wallet_key",
    "load_settings",
    "push_settings",
}

__all__ = [
    "CheckReport",
    "DexpilotEnvironment",
    "LoadedEnvironment",
    "aload_settings",
    "check_environment",
    "load_config",
    "load_environment",
    "load_hot_wallet_key",
    "load_settings",
    "push_settings",
    "read_environment",
    "resolve_hot_wallet_key",
    "verify_rpc_chain_ids",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from settings import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module 'settings' has no attribute {name!r}")
