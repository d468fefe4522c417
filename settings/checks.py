"""``check``: everything an environment needs, verified, with nothing written anywhere.

Files + ``.env`` + manifest parse and validate; the hot-wallet key is present and is wallet A's;
every RPC URL answers with ``chain.chain_id``; with ``chain=True`` (``settings check --chain``)
every configured contract is checked against the chain (``dexpilot.chain.config_audit``: code,
token decimals and symbols, pool pairs, venue factories). All problems of one step are reported
together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from dexpilot.chain.config_audit import ConfigAudit, audit_config
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
    chain_audit: ConfigAudit | None = None

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
    chain: bool = False,
) -> CheckReport:
    """Validate ``env`` completely; raises ``ConfigError`` naming each field that is wrong.

    ``chain``: also audit the config against the chain (needs ``rpc``: the chain id is checked
    first, so a wrong chain is never audited as if it were the right one)."""
    if chain and not rpc:
        raise ConfigError("the chain check needs the RPC endpoints: do not skip the RPC check")
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
    audit = verify_against_chain(loaded.config) if chain else None
    return CheckReport(loaded, hot_key, tuple(chain_ids), tuple(skipped), audit)


def verify_against_chain(config: AppConfig) -> ConfigAudit:
    """The chain audit on the first RPC URL; ``ConfigError`` listing every problem found."""
    wait = min(config.chain.rpc_timeout_s, 10.0)
    url = config.chain.rpc_urls[0]
    with RpcClient([url], timeout=wait) as client:
        try:
            audit = audit_config(config, client)
        except (NetworkError, ApiError) as exc:
            shown = redact_url(url)
            raise ConfigError(f"chain check: {shown} failed while reading the configured "
                              f"contracts ({str(exc).replace(url, shown)})") from None
    if audit.problems:
        raise ConfigError(
            f"settings for environment {config.env!r} do not match the chain "
            f"({len(audit.problems)} problem{'s' if len(audit.problems) != 1 else ''}; "
            f"{audit.summary()}):\n" + "\n".join(f"  - {p.message}" for p in audit.problems)
        )
    return audit


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
