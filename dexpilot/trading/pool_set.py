"""Which tokens, pools and venues a trading runtime may use, given the chain and the quarantine.

The problem: one bad address in the config (a token with no code, a ``balanceOf`` that
reverts) used to fail every snapshot for every token while the bot stayed RUNNING, and config
the chain contradicts (wrong decimals, a pool of another pair or venue) was traded on as if it
were right. Stopping the whole bot for one bad token is as wrong as trading on it.

So, where it is safe, a problem takes out only what it touches:

- at start, ``apply_audit`` turns the ``config_audit`` problems into decisions: a token with a
  problem is quarantined alone (``source="config_audit"``), a venue whose router, quoter,
  factory or position manager is wrong is left out, a pool whose own checks fail is left out;
  each with an error row. A wrong multicall, or no usable venue at all, is a ``SystemFault``;
- every snapshot, ``quarantine_unreadable`` quarantines the tokens whose ``balanceOf`` read
  failed (``source="read_failure"``) and drops their pools from that snapshot;
- ``PoolSet.refresh`` is the one place that leaves out the pools of every token quarantined
  now (by this module, by the fill check, by the token-safety gate: ``Ledger.active_quarantines``)
  and keeps the venues, and so the router, on the same pools: no intent is planned or routed on
  a quarantined token's pool until an operator clears it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from dexpilot.chain.config_audit import ConfigAudit, ConfigProblem
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig, VenueConfig, VenueKind
from dexpilot.errors import SystemFault
from dexpilot.ledger import ErrorKind, Ledger
from dexpilot.market.pools import MarketSnapshot, PoolRef
from dexpilot.venues.base import Venue
from dexpilot.venues.registry import build_venue

log = logging.getLogger(__name__)
AUDIT_SOURCE = "config_audit"
READ_FAILURE_SOURCE = "read_failure"
# Venues whose pools come from the config: rebuilt when the pool set changes. The others
# (aggregator APIs) hold no pools and are built once.
_POOL_VENUES = (VenueKind.UNISWAP_V2, VenueKind.UNISWAP_V3)


@dataclass(frozen=True)
class UsableMarket:
    """What the start-up audit lets a runtime use: enabled venues without problems and the
    pools on them without problems of their own (a quarantined token's pools are left out
    later, by ``PoolSet``, as quarantines come and go)."""

    venues: tuple[VenueConfig, ...]
    pools: tuple[PoolRef, ...]


def apply_audit(config: AppConfig, audit: ConfigAudit, ledger: Ledger, *,
                extra_venues: Sequence[str] = ()) -> UsableMarket:
    """Quarantine, leave out or refuse to start, one decision per audit problem (see above).

    ``extra_venues``: names of venues built outside the config (they count as usable).
    Raises ``SystemFault`` for a wrong multicall or no usable venue (the caller moves the bot
    to ERROR and records it, as for a wrong chain id).
    """
    env = config.env
    chain = audit.chain_problems()
    if chain:
        raise SystemFault("config_audit: " + "; ".join(p.message for p in chain))
    refs = config.pool_refs()
    by_venue = audit.venue_problems()
    venues = []
    for venue in config.venues:
        if not venue.enabled:
            continue
        problems = by_venue.get(venue.name)
        if not problems:
            venues.append(venue)
            continue
        left_out = [_pool_name(p) for p in refs if p.venue == venue.name]
        _record(ledger, env, f"venue {venue.name} disabled", problems, left_out)
    if not venues and not extra_venues:
        raise SystemFault("config_audit: no usable venue: every enabled venue has a problem "
                          "(see the config_audit error rows)")
    usable_names = {v.name for v in venues}
    by_pool = audit.pool_problems()
    pools = []
    for i, pool in enumerate(refs):
        if pool.venue not in usable_names:
            continue
        problems = by_pool.get(i)
        if problems:
            _record(ledger, env, f"pool {_pool_name(pool)} left out", problems, [])
        else:
            pools.append(pool)
    for symbol, problems in audit.token_problems().items():
        token = config.token(symbol)
        left_out = [_pool_name(p) for p in refs if token in (p.token0, p.token1)]
        reason = "; ".join(p.message for p in problems)
        ledger.quarantine_token(env=env, token=token.address, symbol=symbol, source=AUDIT_SOURCE,
                                reason=reason, actor=AUDIT_SOURCE,
                                details={"fields": [p.field for p in problems]})
        _record(ledger, env, f"token {symbol} ({token.address}) quarantined", problems, left_out)
    return UsableMarket(tuple(venues), tuple(pools))


def _record(ledger: Ledger, env: str, what: str, problems: Sequence[ConfigProblem],
            left_out: Sequence[str]) -> None:
    pools = f"; its pools are left out: {', '.join(left_out)}" if left_out else ""
    message = f"{what}: " + "; ".join(p.message for p in problems) + pools
    log.error("%s", message)
    ledger.record_error(env, ErrorKind.CONFIG, AUDIT_SOURCE, message, details={
        "fields": [p.field for p in problems], "addresses": sorted({p.address for p in problems}),
        "chain_said": [p.said for p in problems], "pools_left_out": list(left_out)})


def _pool_name(pool: PoolRef) -> str:
    return f"{pool.venue} {pool.pair} ({pool.address})"


def quarantine_unreadable(config: AppConfig, ledger: Ledger,
                          snapshot: MarketSnapshot) -> MarketSnapshot:
    """Quarantine each token whose balance could not be read in ``snapshot`` (one error row
    for each one not quarantined before: a token stays unreadable cycle after cycle) and
    return the snapshot without those tokens' pools."""
    bad = set(snapshot.unreadable_tokens)
    already = {row.token for row in ledger.active_quarantines(config.env)}
    for token in config.tokens:
        if token.address not in bad or token.address in already:
            continue
        why = snapshot.unreadable_tokens[token.address]
        reason = (f"balanceOf of {token.symbol} ({token.address}) failed at block "
                  f"{snapshot.block_number}: {why}")
        ledger.quarantine_token(env=config.env, token=token.address, symbol=token.symbol,
                                source=READ_FAILURE_SOURCE, reason=reason, actor=AUDIT_SOURCE,
                                details={"block_number": snapshot.block_number})
        left_out = [_pool_name(s.pool) for s in snapshot.pools
                    if token.address in (s.pool.token0.address, s.pool.token1.address)]
        message = f"token {token.symbol} quarantined: {reason}" + (
            f"; its pools are left out: {', '.join(left_out)}" if left_out else "")
        log.error("%s", message)
        ledger.record_error(config.env, ErrorKind.API, READ_FAILURE_SOURCE, message,
                            details={"token": token.address, "pools_left_out": left_out})
    pools = tuple(s for s in snapshot.pools
                  if s.pool.token0.address not in bad and s.pool.token1.address not in bad)
    return replace(snapshot, pools=pools)


class PoolSet:
    """The pools a runtime reads and trades, and the venues built on exactly those pools."""

    def __init__(self, config: AppConfig, client: RpcClient, ledger: Ledger,
                 usable: UsableMarket, extra_venues: Sequence[Venue] = ()) -> None:
        self.config = config
        self.client = client
        self.ledger = ledger
        self.usable = usable
        self.hub = config.token(config.chain.weth)
        self._extra = {v.name: v for v in extra_venues}
        self._fixed: dict[str, Venue] = {}
        self._built_on: tuple[PoolRef, ...] | None = None

    def quarantined(self) -> set[str]:
        """Addresses of the tokens quarantined now because the chain contradicts their config
        or their reads fail (one ledger read). A token quarantined for a short fill keeps its
        pools: it can be read and sold (the way out); the risk engine refuses its buys."""
        unusable = {AUDIT_SOURCE, READ_FAILURE_SOURCE}
        return {row.token for row in self.ledger.active_quarantines(self.config.env)
                if row.source in unusable}

    def refresh(self, quarantined: set[str] | None = None
                ) -> tuple[list[PoolRef], dict[str, Venue] | None]:
        """The usable pools minus every quarantined token's pools, and the venues rebuilt on
        them if that set changed since the last call (``None``: keep the current ones)."""
        out = self.quarantined() if quarantined is None else quarantined
        pools = tuple(p for p in self.usable.pools
                      if p.token0.address not in out and p.token1.address not in out)
        if pools == self._built_on:
            return list(pools), None
        self._built_on = pools
        return list(pools), self._venues(pools)

    def _venues(self, pools: Sequence[PoolRef]) -> dict[str, Venue]:
        venues: dict[str, Venue] = {}
        for config in self.usable.venues:
            if config.kind in _POOL_VENUES:
                venues[config.name] = self._build(config, pools)
            else:
                if config.name not in self._fixed:
                    self._fixed[config.name] = self._build(config, pools)
                venues[config.name] = self._fixed[config.name]
        venues.update(self._extra)
        return venues

    def _build(self, venue: VenueConfig, pools: Sequence[PoolRef]) -> Venue:
        c = self.config
        return build_venue(venue, client=self.client, pools=pools, hubs=[self.hub],
                           chain_id=c.chain.chain_id, taker=c.wallets.hot,
                           aggregator_slippage_bps=c.risk.max_slippage_bps)
