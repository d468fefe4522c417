"""Typed configuration of one environment (dev, test, prod).

These models are the contract between the settings files in ``settings/`` (plus ``.env`` and,
for dev/test, the dev chain manifest) and the core. Every validator names the field and says
why a value is refused, so an operator can fix a file without reading code. Amounts are raw
integer units of the quote token; the hot-wallet key is never part of this model.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from eth_utils import is_address, is_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dexpilot.market.pools import PoolKind, PoolRef
from dexpilot.money import Token

ENVIRONMENTS = ("dev", "test", "prod")


def _checksummed(value: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)")
    if not is_checksum_address(value):
        raise ValueError(
            f"{value!r} is not EIP-55 checksummed; write it with its checksum capitalisation"
        )
    return value


Address = Annotated[str, AfterValidator(_checksummed)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Bps = Annotated[int, Field(ge=0, le=10_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainConfig(_Model):
    chain_id: int = Field(gt=0)
    rpc_urls: list[str] = Field(min_length=1)
    multicall: Address
    weth: str = Field(description="symbol of the wrapped native token")
    rpc_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _urls(self) -> ChainConfig:
        for url in self.rpc_urls:
            if not re.match(r"^https?://[^\s]+$", url):
                raise ValueError(f"rpc_urls: {url!r} is not an http(s) URL")
        return self


class TokenConfig(_Model):
    symbol: str = Field(min_length=1, max_length=16)
    address: Address
    decimals: int = Field(ge=0, le=36)

    def token(self) -> Token:
        return Token(self.symbol, self.address, self.decimals)


class VenueKind(StrEnum):
    UNISWAP_V2 = "uniswap_v2"
    UNISWAP_V3 = "uniswap_v3"
    ZEROEX = "zeroex"


class VenueConfig(_Model):
    name: str = Field(min_length=1)
    kind: VenueKind
    enabled: bool = True
    factory: Address | None = None
    router: Address | None = None
    quoter: Address | None = None
    position_manager: Address | None = None
    api_url: str | None = None
    api_key_env: str | None = Field(
        default=None, description="environment variable holding the aggregator API key"
    )

    @model_validator(mode="after")
    def _addresses_for_kind(self) -> VenueConfig:
        needed: dict[VenueKind, tuple[str, ...]] = {
            VenueKind.UNISWAP_V2: ("factory", "router"),
            VenueKind.UNISWAP_V3: ("factory", "router", "quoter"),
            VenueKind.ZEROEX: ("api_url",),
        }
        missing = [f for f in needed[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"venue {self.name!r} ({self.kind.value}) needs {', '.join(missing)}")
        return self


class PoolConfig(_Model):
    venue: str
    kind: PoolKind
    address: Address
    token0: str
    token1: str
    fee_ppm: int = Field(ge=0, lt=1_000_000)


class WalletsConfig(_Model):
    hot: Address = Field(description="wallet A: trades; its key is a secret")
    cold: Address = Field(description="wallet B: receives profit; an address only")
    hot_key_env: str = "DEXPILOT_HOT_WALLET_KEY"
    hot_key_secret_block: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the hot-wallet key"
    )

    @model_validator(mode="after")
    def _distinct(self) -> WalletsConfig:
        if self.hot == self.cold:
            raise ValueError("wallets: hot (A) and cold (B) must be different addresses")
        return self


class RiskLimits(_Model):
    """Hard limits, amounts in raw units of the strategy's quote token."""

    max_trade_quote: NonNegativeInt
    max_daily_volume_quote: NonNegativeInt
    working_capital_quote: NonNegativeInt
    daily_loss_limit_quote: NonNegativeInt
    max_exposure_per_token_quote: NonNegativeInt
    max_total_exposure_quote: NonNegativeInt
    max_slippage_bps: Bps = 50
    warn_price_impact_bps: Bps = 100
    max_price_impact_bps: Bps = 500
    max_reference_deviation_bps: Bps = 300
    max_gas_price_wei: NonNegativeInt = 200 * 10**9
    min_gas_balance_wei: NonNegativeInt = 10**16
    token_allowlist: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        pairs = [
            ("max_trade_quote", "max_daily_volume_quote"),
            ("max_trade_quote", "working_capital_quote"),
            ("max_exposure_per_token_quote", "max_total_exposure_quote"),
            ("warn_price_impact_bps", "max_price_impact_bps"),
        ]
        for small, large in pairs:
            if getattr(self, small) > getattr(self, large):
                raise ValueError(
                    f"risk: {small} ({getattr(self, small)}) exceeds {large} "
                    f"({getattr(self, large)})"
                )
        if self.max_slippage_bps == 0:
            raise ValueError("risk: max_slippage_bps must be > 0 (a zero bound makes every swap fail)")
        return self


class StrategyConfig(_Model):
    name: str = "cross_venue_arbitrage"
    quote_token: str
    mode: Literal["paper", "live"] = "paper"
    cycle_interval_s: float = Field(default=5.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class LedgerConfig(_Model):
    url: str = "sqlite:///.devnet/ledger.db"

    @model_validator(mode="after")
    def _scheme(self) -> LedgerConfig:
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", self.url):
            raise ValueError(f"ledger.url: {self.url!r} must start with sqlite:// or postgresql://")
        return self


class MetricsConfig(_Model):
    pushgateway_url: str | None = None
    listen_port: int | None = Field(default=None, ge=1, le=65535)


class AppConfig(_Model):
    """One environment, complete and consistent."""

    env: Literal["dev", "test", "prod"]
    chain: ChainConfig
    tokens: list[TokenConfig] = Field(min_length=1)
    venues: list[VenueConfig] = Field(min_length=1)
    pools: list[PoolConfig] = Field(default_factory=list)
    wallets: WalletsConfig
    risk: RiskLimits
    strategy: StrategyConfig
    ledger: LedgerConfig = LedgerConfig()
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        symbols = [t.symbol for t in self.tokens]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"tokens: duplicate symbols in {symbols}")
        venue_names = {v.name for v in self.venues}
        if self.chain.weth not in symbols:
            raise ValueError(f"chain.weth: {self.chain.weth!r} is not a configured token")
        if self.strategy.quote_token not in symbols:
            raise ValueError(
                f"strategy.quote_token: {self.strategy.quote_token!r} is not a configured token"
            )
        for sym in self.risk.token_allowlist:
            if sym not in symbols:
                raise ValueError(f"risk.token_allowlist: {sym!r} is not a configured token")
        for i, pool in enumerate(self.pools):
            if pool.venue not in venue_names:
                raise ValueError(f"pools[{i}].venue: unknown venue {pool.venue!r}")
            for side in ("token0", "token1"):
                if getattr(pool, side) not in symbols:
                    raise ValueError(f"pools[{i}].{side}: unknown token {getattr(pool, side)!r}")
        return self

    def token(self, symbol: str) -> Token:
        for t in self.tokens:
            if t.symbol == symbol:
                return t.token()
        raise KeyError(symbol)

    def pool_refs(self) -> list[PoolRef]:
        return [
            PoolRef(p.venue, p.kind, p.address, self.token(p.token0), self.token(p.token1), p.fee_ppm)
            for p in self.pools
        ]
