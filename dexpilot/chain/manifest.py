"""The dev chain manifest: what ``dexpilot devnet up`` deployed, where, on which RPC URL.

The ``dev`` and ``test`` settings read chain id, RPC URL and every contract, token, venue and
pool address from this file instead of repeating them, so a redeploy never leaves a stale
address in a settings file.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dexpilot.config import PoolConfig, TokenConfig, VenueConfig
from dexpilot.errors import ConfigError
from dexpilot.market.pools import PoolRef


class DevnetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chain_id: int
    rpc_url: str
    fingerprint: str
    multicall: str
    weth: str
    tokens: list[TokenConfig]
    venues: list[VenueConfig]
    pools: list[PoolConfig]
    hot_wallet: str
    cold_wallet: str
    deployer: str
    noise_traders: list[str] = []
    # A random id per start of the chain: a chain loaded from the same cached state has the
    # same chain id and early blocks as the last one, but not its later transactions, so the
    # dev ledger is keyed on this (``dexpilot.execution.ledger_audit.claim_dev_ledger``).
    instance: str | None = None

    def pool_refs(self) -> list[PoolRef]:
        tokens = {t.symbol: t.token() for t in self.tokens}
        return [PoolRef(p.venue, p.kind, p.address, tokens[p.token0], tokens[p.token1], p.fee_ppm)
                for p in self.pools]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> DevnetManifest:
        if not path.exists():
            raise ConfigError(
                f"dev chain manifest {path} not found: "
                "start the dev chain with `dexpilot devnet up`"
            )
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"dev chain manifest {path} is invalid: {exc}") from exc
