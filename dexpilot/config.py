"""Typed configuration of one environment (dev, test, prod).

These models are the contract between the settings files in ``settings/`` (plus ``.env`` and,
for dev/test, the dev chain manifest) and the core. Every validator names the field and says
why a value is refused, so an operator can fix a file without reading code. Amounts are raw
integer units of the quote token; the hot-wallet key is never part of this model: it is a
``HotWalletKey`` resolved at run time (``settings.secrets.resolve_hot_wallet_key``).

Validators that check several fields at once raise ``FieldError(field, reason)``; the field is
relative to the model being validated, so ``settings`` can report the full path
(``risk.max_trade_quote: ...``) from pydantic's location of the error.
"""

from __future__ import annotations

import hmac
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from dexpilot.errors import ConfigError
from dexpilot.market.pools import PoolKind, PoolRef
from dexpilot.money import Token

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from dexpilot.chain.rpc import EndpointPolicy, RpcClient

ENVIRONMENTS = ("dev", "test", "prod")

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


class FieldError(ValueError):
    """A refused value, with the field (relative to the model that raised it) and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _checksummed(value: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        shown = value if isinstance(value, str) and len(value) <= 50 else type(value).__name__
        raise ValueError(f"{shown!r} is not an Ethereum address (0x followed by 40 hex digits)")
    if not is_checksum_address(value):
        raise ValueError(
            f"{value!r} is not EIP-55 checksummed; write it as {to_checksum_address(value)}"
        )
    return value


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _split_urls(value: Any) -> Any:
    # One environment variable can hold several endpoints: "https://a,https://b".
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _empty_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _env_var_name(value: str) -> str:
    if _HEX_KEY.match(value):
        # Never echo it: it looks like a private key pasted in the wrong place.
        raise ValueError(
            "looks like a private key, not an environment variable name: never put the key "
            "in a settings file; name the variable that holds it"
        )
    if not _ENV_VAR_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _block_name(value: str | None) -> str | None:
    if value is None:
        return None
    if _HEX_KEY.match(value):
        raise ValueError(
            "looks like a private key, not a Secret block name: never put the key in a settings "
            "file; name the Prefect Secret block that holds it"
        )
    if not _BLOCK_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a Prefect block name (lowercase letters, digits and dashes)"
        )
    return value


Address = Annotated[str, AfterValidator(_checksummed)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Bps = Annotated[int, Field(ge=0, le=10_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainConfig(_Model):
    chain_id: int = Field(gt=0)
    rpc_urls: Annotated[list[HttpUrl], BeforeValidator(_split_urls)] = Field(
        min_length=1, description="RPC endpoints in failover order (a comma-separated string works)"
    )
    multicall: Address
    weth: str = Field(description="symbol of the wrapped native token")
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    rpc_retries: int = Field(default=2, ge=0, le=10, description=(
        "retries of a request that got no answer (timeout, 429, 5xx) on one endpoint before "
        "switching to the next"))
    rpc_backoff_s: float = Field(default=0.25, ge=0, description=(
        "wait before the first such retry, doubled for each further one"))
    rpc_max_retry_after_s: float = Field(default=30.0, ge=0, description=(
        "longest Retry-After (HTTP 429/503) waited for; a longer one switches endpoint"))
    rpc_probe_interval_s: float = Field(default=60.0, gt=0, description=(
        "after a failover, how often the earlier endpoints are probed to go back to them"))
    block_time_s: float | None = Field(default=None, gt=0, description=(
        "the chain's block time; unset turns the stuck-head check off (an automining dev "
        "chain makes blocks only when it gets transactions)"))
    stale_after_blocks: float = Field(default=10.0, gt=0, description=(
        "a head that has not advanced for this many block times is a stale endpoint"))
    max_head_lag_s: float | None = Field(default=None, gt=0, description=(
        "a head whose block timestamp lags the wall clock by more is a stale endpoint "
        "(unset: not checked)"))

    def endpoint_policy(self) -> EndpointPolicy:
        from dexpilot.chain.rpc import EndpointPolicy

        return EndpointPolicy(retries=self.rpc_retries, backoff_s=self.rpc_backoff_s,
                              max_retry_after_s=self.rpc_max_retry_after_s,
                              probe_interval_s=self.rpc_probe_interval_s)

    def client(self) -> RpcClient:
        """The RPC client for these endpoints, with this chain's error policy."""
        from dexpilot.chain.rpc import RpcClient

        return RpcClient(self.rpc_urls, timeout=self.rpc_timeout_s,
                         policy=self.endpoint_policy(), chain_id=self.chain_id)

    @model_validator(mode="after")
    def _urls(self) -> ChainConfig:
        seen: set[str] = set()
        for i, url in enumerate(self.rpc_urls):
            if url in seen:
                raise FieldError(
                    f"rpc_urls[{i}]", "duplicate endpoint (failover needs distinct URLs)"
                )
            seen.add(url)
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
        for field in needed[self.kind]:
            if getattr(self, field) is None:
                raise FieldError(
                    field, f"venue {self.name!r} ({self.kind.value}) needs {field}"
                )
        if self.api_url is not None and not _HTTP_URL.match(self.api_url):
            raise FieldError("api_url", f"{self.api_url!r} is not an http(s) URL")
        return self


class PoolConfig(_Model):
    venue: str
    kind: PoolKind
    address: Address
    token0: str
    token1: str
    fee_ppm: int = Field(ge=0, lt=1_000_000)

    @model_validator(mode="after")
    def _two_tokens(self) -> PoolConfig:
        if self.token0 == self.token1:
            raise FieldError(
                "token1", f"a pool needs two different tokens, got {self.token0!r} twice"
            )
        return self


class WalletsConfig(_Model):
    hot: Address = Field(description="wallet A: trades; its key is a secret")
    cold: Address = Field(description="wallet B: receives profit; an address only")
    hot_key_env: Annotated[str, AfterValidator(_env_var_name)] = Field(
        default="DEXPILOT_HOT_WALLET_KEY",
        description="environment variable (or .env entry) holding the hot-wallet key",
    )
    hot_key_secret_block: Annotated[str | None, AfterValidator(_block_name)] = Field(
        default=None, description="name of a Prefect Secret block holding the hot-wallet key"
    )

    @model_validator(mode="after")
    def _distinct(self) -> WalletsConfig:
        for field in ("hot", "cold"):
            if int(getattr(self, field), 16) == 0:
                raise FieldError(field, "is the zero address (a placeholder?): set the real one")
        if self.hot == self.cold:
            raise FieldError("cold", "hot (A) and cold (B) must be different addresses")
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
    min_reference_sources: int = Field(
        default=2, ge=1, le=32,
        description="independent on-chain prices (other pools, TWAPs) a pool's reference needs; "
                    "a configured external feed alone is enough",
    )
    reference_twap_window_s: int = Field(
        default=600, ge=60, le=86_400,
        description="seconds the on-chain time-weighted reference prices average over "
                    "(Uniswap V3 observe, V2 cumulative prices)",
    )
    max_gas_price_wei: NonNegativeInt = 200 * 10**9
    min_gas_balance_wei: NonNegativeInt = 10**16
    max_token_tax_bps: Bps = Field(
        default=0, description="highest buy, transfer or sell tax a token may take (simulated)"
    )
    token_verdict_ttl_s: float = Field(
        default=3600.0, gt=0, description="how long a token-safety verdict is trusted"
    )
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
                raise FieldError(
                    small,
                    f"{getattr(self, small)} exceeds {large} ({getattr(self, large)}); "
                    f"{small} must be <= {large}",
                )
        if self.max_slippage_bps == 0:
            raise FieldError(
                "max_slippage_bps", "must be > 0 (a zero bound makes every swap fail)"
            )
        if len(set(self.token_allowlist)) != len(self.token_allowlist):
            raise FieldError("token_allowlist", f"duplicate symbols in {self.token_allowlist}")
        return self


class StrategyConfig(_Model):
    name: Literal["cross_venue_arbitrage", "statistical"] = "cross_venue_arbitrage"
    quote_token: str
    mode: Literal["paper", "live"] = "paper"
    cycle_interval_s: float = Field(default=5.0, gt=0)
    max_failed_cycles: int = Field(default=5, ge=1, description=(
        "consecutive cycles failed by network or API errors after which a session moves the "
        "bot to ERROR"))
    params: dict[str, Any] = Field(default_factory=dict)


class LedgerConfig(_Model):
    url: str = "sqlite:///.devnet/ledger.db"

    @model_validator(mode="after")
    def _scheme(self) -> LedgerConfig:
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", self.url):
            raise FieldError(
                "url", f"{redact_url(self.url)!r} must start with sqlite:// or postgresql://"
            )
        return self


class MetricsConfig(_Model):
    pushgateway_url: Annotated[HttpUrl | None, BeforeValidator(_empty_to_none)] = None
    listen_port: Annotated[int | None, BeforeValidator(_empty_to_none)] = Field(
        default=None, ge=1, le=65535
    )


class ReferenceFeedConfig(_Model):
    """An external price feed (CoinGecko ``/simple/price`` shape) for the risk engine's
    reference-price check. Where it answers, it alone is the reference; without it (or when it
    fails) the reference comes from on-chain sources independent of the traded pool
    (``dexpilot.market.reference``)."""

    url: str = Field(min_length=1)
    ids: dict[str, str] = Field(default_factory=dict, description="token symbol -> feed id")
    max_age_s: float = Field(default=120.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _url(self) -> ReferenceFeedConfig:
        if not _HTTP_URL.match(self.url):
            raise FieldError("url", f"{self.url!r} is not an http(s) URL")
        return self


class SweepConfig(_Model):
    """Profit sweep: value of wallet A above ``risk.working_capital_quote`` goes to wallet B
    once it exceeds ``threshold_quote`` (raw quote units), in the quote token."""

    threshold_quote: NonNegativeInt = 0


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
    sweep: SweepConfig = SweepConfig()
    reference_feed: ReferenceFeedConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        symbols = [t.symbol for t in self.tokens]
        known = ", ".join(symbols)
        for i, sym in enumerate(symbols):
            if sym in symbols[:i]:
                raise FieldError(f"tokens[{i}].symbol", f"duplicate symbol {sym!r}")
        addresses = [t.address for t in self.tokens]
        for i, addr in enumerate(addresses):
            if addr in addresses[:i]:
                raise FieldError(f"tokens[{i}].address", f"{addr} is already another token")
        venue_names = [v.name for v in self.venues]
        for i, name in enumerate(venue_names):
            if name in venue_names[:i]:
                raise FieldError(f"venues[{i}].name", f"duplicate venue name {name!r}")
        if self.chain.weth not in symbols:
            raise FieldError(
                "chain.weth", f"{self.chain.weth!r} is not a configured token ({known})"
            )
        if self.strategy.quote_token not in symbols:
            raise FieldError(
                "strategy.quote_token",
                f"{self.strategy.quote_token!r} is not a configured token ({known})",
            )
        for i, sym in enumerate(self.risk.token_allowlist):
            if sym not in symbols:
                raise FieldError(
                    f"risk.token_allowlist[{i}]", f"{sym!r} is not a configured token ({known})"
                )
        venue_kinds = {v.name: v.kind for v in self.venues}
        pool_kind_for = {PoolKind.V2: VenueKind.UNISWAP_V2, PoolKind.V3: VenueKind.UNISWAP_V3}
        for i, pool in enumerate(self.pools):
            if pool.venue not in venue_kinds:
                raise FieldError(
                    f"pools[{i}].venue",
                    f"unknown venue {pool.venue!r} (configured: {', '.join(venue_names)})",
                )
            for side in ("token0", "token1"):
                if getattr(pool, side) not in symbols:
                    raise FieldError(
                        f"pools[{i}].{side}", f"unknown token {getattr(pool, side)!r} ({known})"
                    )
            if venue_kinds[pool.venue] != pool_kind_for[pool.kind]:
                raise FieldError(
                    f"pools[{i}].kind",
                    f"a {pool.kind.value} pool cannot be on venue {pool.venue!r} "
                    f"({venue_kinds[pool.venue].value})",
                )
        self._no_duplicate_pools()
        return self

    def _no_duplicate_pools(self) -> None:
        # A pool listed twice would count twice wherever pools are counted or averaged (the
        # reference price's sources), and a venue answers one pool per pair and fee tier.
        by_address: dict[str, int] = {}
        by_market: dict[tuple[str, frozenset[str], int], int] = {}
        for i, pool in enumerate(self.pools):
            first = by_address.setdefault(pool.address.lower(), i)
            if first != i:
                raise FieldError(f"pools[{i}].address",
                                 f"{pool.address} is already listed as pools[{first}]")
            market = (pool.venue, frozenset((pool.token0, pool.token1)), pool.fee_ppm)
            first = by_market.setdefault(market, i)
            if first != i:
                raise FieldError(
                    f"pools[{i}].address",
                    f"{pool.address}: pools[{first}] is already the {pool.token0}/{pool.token1} "
                    f"pool with fee {pool.fee_ppm} ppm on venue {pool.venue!r}",
                )

    def token(self, symbol: str) -> Token:
        for t in self.tokens:
            if t.symbol == symbol:
                return t.token()
        raise KeyError(symbol)

    def pool_refs(self) -> list[PoolRef]:
        return [
            PoolRef(
                p.venue, p.kind, p.address, self.token(p.token0), self.token(p.token1), p.fee_ppm
            )
            for p in self.pools
        ]


def redact_url(url: str) -> str:
    """A URL fit to show: no password (``user:***@``), no path or query (API keys live there)."""
    m = re.match(r"^(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<auth>[^@/]*@)?(?P<host>[^/?#]*)(?P<rest>.*)$",
                 url)
    if not m:
        return "<unparseable URL>"
    auth = m.group("auth") or ""
    if ":" in auth:
        auth = auth.split(":", 1)[0] + ":***@"
    rest = m.group("rest")
    if m.group("scheme").startswith("sqlite"):
        return url  # a file path, no credentials
    shown_rest = "/***" if rest not in ("", "/") else rest
    return f"{m.group('scheme')}{auth}{m.group('host')}{shown_rest}"


class HotWalletKey:
    """The hot-wallet (wallet A) private key, masked in ``repr``/``str``, with its address.

    Build it with ``parse_hot_wallet_key``; read the raw key only where a transaction is signed
    (``get_secret_value()`` or ``account()``). Never pass it as a flow or task parameter: Prefect
    stores parameters; resolve it inside the task that signs.
    """

    __slots__ = ("_key", "address", "source")

    def __init__(self, key: str, *, address: str, source: str) -> None:
        self._key = key
        self.address = address
        self.source = source

    def get_secret_value(self) -> str:
        return self._key

    def account(self) -> LocalAccount:
        from eth_account import Account

        account: LocalAccount = Account.from_key(self._key)
        return account

    def __repr__(self) -> str:
        return f"HotWalletKey(address={self.address!r}, source={self.source!r}, key='**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HotWalletKey) and hmac.compare_digest(other._key, self._key)

    def __hash__(self) -> int:
        return hash(self.address)

    def __reduce__(self) -> Any:
        raise TypeError("HotWalletKey cannot be pickled: resolve the key where it is used")


def parse_hot_wallet_key(raw: str, *, expected_address: str, source: str) -> HotWalletKey:
    """Check that ``raw`` is a 32-byte hex private key whose address is ``expected_address``.

    Error messages name ``source`` (e.g. "environment variable DEXPILOT_HOT_WALLET_KEY") and
    the addresses involved, never the key.
    """
    from eth_account import Account

    text = raw.strip()
    if not _HEX_KEY.match(text):
        raise ConfigError(
            f"{source}: not a private key (expected 32 bytes as 64 hex digits, optionally "
            f"0x-prefixed; got {len(text)} characters)"
        )
    key = text if text.startswith("0x") else "0x" + text
    try:
        address = Account.from_key(key).address
    except Exception:  # out of the curve's range; the library's message may echo the key
        raise ConfigError(f"{source}: not a valid secp256k1 private key") from None
    if address != expected_address:
        raise ConfigError(
            f"wallets.hot: the key in {source} belongs to {address}, not to the configured hot "
            f"wallet {expected_address}"
        )
    return HotWalletKey(key, address=address, source=source)
