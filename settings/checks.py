"""``check``: everything an environment needs, verified, with nothing written anywhere.

Files + ``.env`` + manifest parse and validate; the hot-wallet key is present and is wallet A's;
every RPC URL answers with ``chain.chain_id``. All problems of one step are reported together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig, HotWalletKey, redact_url
from dexpilot.errors import ApiError, ConfigError, NetworkError
from settings.files import LoadedEnvironment, read_environment
from settings.secrets import resolve_hot_wallet_key


@dataclass(frozen=True)
class CheckReport:
    loaded: LoadedEnvironment
    key: HotWalletKey | None
    rpc_chain_ids: tuple[tuple[str, int], ...]
    skipped: tuple[str, ...]

    @property
    def config(self) -> AppConfig:
        return self.loaded.config


def check_environment(
    env: str,
    *,
    root: Path | str | None = None,
    rpc: bool = True,
    key: bool = True,
    stored_key: SecretStr | None = None,
) -> CheckReport:
    """Validate ``env`` completely; raises ``ConfigError`` naming each field that is wrong."""
    loaded = read_environment(env, root=root)
    skipped: list[str] = []
    hot_key: HotWalletKey | None = None
    if key:
        hot_key = resolve_hot_wallet_key(loaded.config, root=root, stored=stored_key)
    else:
        skipped.append("hot-wallet key")
    chain_ids: list[tuple[str, int]] = []
    if rpc:
        chain_ids = verify_rpc_chain_ids(loaded.config)
    else:
        skipped.append("RPC chain id")
    return CheckReport(loaded, hot_key, tuple(chain_ids), tuple(skipped))


def verify_rpc_chain_ids(
    config: AppConfig, *, timeout: float | None = None
) -> list[tuple[str, int]]:
    """Ask every RPC URL for its chain id; ``ConfigError`` if one differs or does not answer."""
    expected = config.chain.chain_id
    wait = timeout if timeout is not None else min(config.chain.rpc_timeout_s, 10.0)
    answers: list[tuple[str, int]] = []
    problems: list[str] = []
    for i, url in enumerate(config.chain.rpc_urls):
        shown = redact_url(url)
        try:
            with RpcClient([url], timeout=wait) as client:
                actual = client.chain_id()
        except (NetworkError, ApiError) as exc:
            problems.append(
                f"chain.rpc_urls[{i}]: {shown} did not answer eth_chainId "
                f"({str(exc).replace(url, shown)})"
            )
            continue
        except ValueError:
            problems.append(f"chain.rpc_urls[{i}]: {shown} answered eth_chainId with a non-number")
            continue
        if actual != expected:
            problems.append(
                f"chain.chain_id: is {expected} but chain.rpc_urls[{i}] ({shown}) is chain {actual}"
            )
        answers.append((url, actual))
    if problems:
        raise ConfigError(
            f"settings for environment {config.env!r}: the RPC endpoints do not fit:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return answers
