"""Build the venues of an environment from its configuration (or the dev chain manifest).

One ``VenueConfig`` becomes one ``Venue``: ``uniswap_v2`` -> ``UniswapV2Venue`` over the
venue's V2 pools, ``uniswap_v3`` -> ``UniswapV3Venue`` over its V3 pools, ``zeroex`` ->
``ZeroExVenue`` with the API key read from the environment variable the config names. Disabled
venues are left out. The wrapped native token (WETH) is the hub for two-hop paths.

Bad configuration raises ``ConfigError`` naming the venue and the field; a missing API key
names the variable, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import httpx

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig, VenueConfig, VenueKind
from dexpilot.errors import ConfigError
from dexpilot.market.pools import PoolRef
from dexpilot.money import Token
from dexpilot.venues.base import Venue
from dexpilot.venues.uniswap_v2 import UniswapV2Venue
from dexpilot.venues.uniswap_v3 import UniswapV3Venue
from dexpilot.venues.zeroex import ZeroExVenue

DEFAULT_AGGREGATOR_SLIPPAGE_BPS = 50


def build_venue(
    config: VenueConfig,
    *,
    client: RpcClient,
    pools: Sequence[PoolRef],
    hubs: Sequence[Token] = (),
    chain_id: int,
    taker: str,
    env: Mapping[str, str] | None = None,
    aggregator_slippage_bps: int = DEFAULT_AGGREGATOR_SLIPPAGE_BPS,
    aggregator_timeout_s: float = 5.0,
    http: httpx.Client | None = None,
) -> Venue:
    env = os.environ if env is None else env
    if config.kind is VenueKind.UNISWAP_V2:
        assert config.router is not None  # VenueConfig's validator requires it
        return UniswapV2Venue(config.name, router=config.router, pools=pools, client=client,
                              hubs=hubs)
    if config.kind is VenueKind.UNISWAP_V3:
        assert config.router is not None and config.quoter is not None
        return UniswapV3Venue(config.name, client=client, quoter=config.quoter,
                              router=config.router, pools=pools, hubs=hubs)
    if config.kind is VenueKind.ZEROEX:
        assert config.api_url is not None
        key: str | None = None
        if config.api_key_env:
            key = env.get(config.api_key_env) or None
            if key is None:
                raise ConfigError(
                    f"venues.{config.name}.api_key_env: environment variable "
                    f"{config.api_key_env} is not set (it must hold the aggregator's API key)"
                )
        return ZeroExVenue(config.name, api_url=config.api_url, chain_id=chain_id, taker=taker,
                           api_key=key, slippage_bps=aggregator_slippage_bps,
                           timeout=aggregator_timeout_s, http=http)
    raise ConfigError(f"venues.{config.name}.kind: unsupported venue kind {config.kind!r}")


def build_venues(
    configs: Iterable[VenueConfig],
    *,
    client: RpcClient,
    pools: Sequence[PoolRef],
    hubs: Sequence[Token] = (),
    chain_id: int,
    taker: str,
    env: Mapping[str, str] | None = None,
    aggregator_slippage_bps: int = DEFAULT_AGGREGATOR_SLIPPAGE_BPS,
    aggregator_timeout_s: float = 5.0,
) -> dict[str, Venue]:
    """Every enabled venue by name, in configuration order."""
    venues: dict[str, Venue] = {}
    for config in configs:
        if not config.enabled:
            continue
        if config.name in venues:
            raise ConfigError(f"venues: duplicate venue name {config.name!r}")
        venues[config.name] = build_venue(
            config, client=client, pools=pools, hubs=hubs, chain_id=chain_id, taker=taker,
            env=env, aggregator_slippage_bps=aggregator_slippage_bps,
            aggregator_timeout_s=aggregator_timeout_s,
        )
    return venues


def venues_from_config(config: AppConfig, client: RpcClient, *,
                       env: Mapping[str, str] | None = None,
                       aggregator_timeout_s: float = 5.0) -> dict[str, Venue]:
    """The venues of one environment; the aggregator's slippage is the risk limit's."""
    return build_venues(
        config.venues, client=client, pools=config.pool_refs(),
        hubs=[config.token(config.chain.weth)], chain_id=config.chain.chain_id,
        taker=config.wallets.hot, env=env,
        aggregator_slippage_bps=config.risk.max_slippage_bps,
        aggregator_timeout_s=aggregator_timeout_s,
    )


def venues_from_manifest(
    manifest: DevnetManifest,
    client: RpcClient,
    *,
    extra: Iterable[VenueConfig] = (),
    env: Mapping[str, str] | None = None,
    aggregator_slippage_bps: int = DEFAULT_AGGREGATOR_SLIPPAGE_BPS,
    aggregator_timeout_s: float = 5.0,
) -> dict[str, Venue]:
    """The dev chain's venues, plus ``extra`` ones such as an aggregator stand-in."""
    tokens = {t.symbol: t.token() for t in manifest.tokens}
    return build_venues(
        [*manifest.venues, *extra], client=client, pools=manifest.pool_refs(),
        hubs=[tokens[manifest.weth]], chain_id=manifest.chain_id, taker=manifest.hot_wallet,
        env=env, aggregator_slippage_bps=aggregator_slippage_bps,
        aggregator_timeout_s=aggregator_timeout_s,
    )
