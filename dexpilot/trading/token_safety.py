"""The token-safety gate of a trading cycle: a verdict for every token the cycle would buy.

Before risk judges the cycle's orders, every token an order buys needs a verdict
(``dexpilot.risk.token_safety``). A verdict still valid is reused (in memory, else from the
ledger, where every verdict is stored with the block it was simulated at), so a warm cycle
costs no round trip; tokens without one are simulated together in one JSON-RPC batch. A token
that cannot be simulated (no pool to simulate on, the node fails) gets an inconclusive
verdict: its buys are refused this cycle and it is simulated again next cycle, never assumed
safe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dexpilot.chain.failover import with_failover
from dexpilot.chain.rpc import RpcClient
from dexpilot.chain.token_probe import ProbeFailure, ProbeRequest, ProbeRoute, run_probes
from dexpilot.config import AppConfig, VenueKind
from dexpilot.errors import ApiError, NetworkError
from dexpilot.ledger import Ledger, TokenVerdictRow
from dexpilot.market.pools import MarketSnapshot, PoolKind
from dexpilot.money import Token
from dexpilot.risk.token_safety import TokenVerdict, inconclusive, judge
from dexpilot.routing.router import Route, RouteLeg
from dexpilot.strategy.intent import OrderIntent

log = logging.getLogger(__name__)
# The small probe buys this fraction of the order: small enough for any max-tx limit that
# lets trading happen at all, large enough that a percentage tax is measurable.
SMALL_PROBE_DIVISOR = 50


@dataclass(frozen=True, slots=True)
class _Need:
    token: Token
    route: ProbeRoute | None
    amount_in: int
    why_not: str = ""


class TokenSafetyGate:
    def __init__(self, config: AppConfig, client: RpcClient, ledger: Ledger) -> None:
        self.config = config
        self.client = client
        self.ledger = ledger
        self.wallet = config.wallets.hot
        self._cache: dict[str, tuple[TokenVerdict, datetime]] = {}
        self._distrusted: set[str] = set()  # addresses whose stored verdict is not reused
        self.probes_run = 0  # simulations sent, for benchmarks and tests

    def forget(self, token: Token) -> None:
        """Simulate ``token`` again before its next buy (a trade with it just failed to
        simulate: whatever the stored verdict says, the token may have changed)."""
        self._cache.pop(token.address, None)
        self._distrusted.add(token.address)

    def verdicts(self, buys: Sequence[tuple[OrderIntent, Route]],
                 snapshot: MarketSnapshot) -> dict[str, TokenVerdict]:
        """Token symbol -> verdict for every token bought by ``buys``."""
        now = datetime.now(UTC)
        needs: dict[str, _Need] = {}
        for intent, route in buys:
            need = self._need(intent, route, snapshot)
            held = needs.get(need.token.symbol)
            if held is None or (need.route is not None and need.amount_in > held.amount_in):
                needs[need.token.symbol] = need
        out: dict[str, TokenVerdict] = {}
        to_probe: list[tuple[_Need, ProbeRequest]] = []
        for symbol, need in needs.items():
            cached = self._cached(need, now)
            if cached is not None:
                out[symbol] = cached
            elif need.route is None:
                out[symbol] = inconclusive(need.token, "", snapshot.block_number, need.why_not)
            else:
                request = self._request(need, snapshot)
                if isinstance(request, str):
                    out[symbol] = inconclusive(need.token, need.route.pool,
                                               snapshot.block_number, request)
                else:
                    to_probe.append((need, request))
        out.update(self._probe(to_probe, snapshot.block_number, now))
        return out

    # -- what to simulate -------------------------------------------------------------------
    def _need(self, intent: OrderIntent, route: Route,
              snapshot: MarketSnapshot) -> _Need:
        token = intent.token_out
        leg = max(route.legs, key=lambda leg: leg.amount_in)
        probe_route = (self._route_of(leg)
                       or self._configured_route(intent.token_in, token, snapshot))
        if probe_route is None:
            return _Need(token, None, 0, f"no Uniswap pool of {intent.token_in.symbol}/"
                                         f"{token.symbol} to simulate the buy on")
        return _Need(token, probe_route, route.amount_in)

    def _route_of(self, leg: RouteLeg) -> ProbeRoute | None:
        quote = leg.quote
        venue = next((v for v in self.config.venues if v.name == leg.venue), None)
        if venue is None or not quote.pools or venue.router is None:
            return None  # an aggregator's route is its own: simulate on a configured pool
        if venue.kind is VenueKind.UNISWAP_V2:
            return ProbeRoute(PoolKind.V2, venue.router, quote.pools[-1], quote.path)
        if venue.kind is VenueKind.UNISWAP_V3:
            return ProbeRoute(PoolKind.V3, venue.router, quote.pools[-1], quote.path,
                              quote.fees_ppm, venue.quoter)
        return None

    def _configured_route(self, token_in: Token, token: Token,
                          snapshot: MarketSnapshot) -> ProbeRoute | None:
        """A pool of the snapshot (the runtime's usable pools) pairing the two tokens."""
        venues = {v.name: v for v in self.config.venues if v.enabled}
        for pool in (snap.pool for snap in snapshot.pools):
            venue = venues.get(pool.venue)
            if venue is None or venue.router is None or {pool.token0, pool.token1} != {
                    token_in, token}:
                continue
            fees = (pool.fee_ppm,) if pool.kind is PoolKind.V3 else ()
            return ProbeRoute(pool.kind, venue.router, pool.address, (token_in, token), fees,
                              venue.quoter)
        return None

    def _request(self, need: _Need, snapshot: MarketSnapshot) -> ProbeRequest | str:
        assert need.route is not None
        pay = need.route.path[0]
        have = snapshot.token_balances.get((self.wallet, pay.address), 0)
        small = max(1, need.amount_in // SMALL_PROBE_DIVISOR)
        big = min(need.amount_in, have - 2 * small)
        if big <= 0:
            return f"wallet A holds too little {pay.symbol} to simulate a buy with"
        return ProbeRequest(need.route, small, big)

    # -- cache ------------------------------------------------------------------------------
    def _cached(self, need: _Need, now: datetime) -> TokenVerdict | None:
        if need.token.address in self._distrusted:
            return None
        held = self._cache.get(need.token.address)
        if held is None:
            row = self.ledger.latest_token_verdict(self.config.env, need.token.address,
                                                   valid_at=now)
            if row is not None:
                held = (_from_row(row, need.token), row.expires_at)
                self._cache[need.token.address] = held
        if held is None:
            return None
        verdict, expires_at = held
        pay = need.route.path[0].address if need.route is not None else ""
        if expires_at <= now or (need.route is not None
                                 and not verdict.covers(pay, need.amount_in)):
            return None
        return verdict

    def _probe(self, needs: Sequence[tuple[_Need, ProbeRequest]], block_number: int,
               now: datetime) -> Mapping[str, TokenVerdict]:
        if not needs:
            return {}
        requests = [request for _, request in needs]
        try:
            reports = with_failover(self.client, lambda: run_probes(
                self.client, self.wallet, requests, block_number))
        except (ApiError, NetworkError) as exc:
            log.warning("token-safety simulation failed: %s", exc)
            return {need.token.symbol: inconclusive(need.token, request.route.pool,
                                                    block_number, f"simulation failed: {exc}")
                    for need, request in needs}
        self.probes_run += len(requests)
        out: dict[str, TokenVerdict] = {}
        expires_at = now + timedelta(seconds=self.config.risk.token_verdict_ttl_s)
        for (need, request), report in zip(needs, reports, strict=True):
            if isinstance(report, ProbeFailure):
                out[need.token.symbol] = inconclusive(need.token, request.route.pool,
                                                      block_number, report.reason)
                continue
            verdict = judge(report, max_tax_bps=self.config.risk.max_token_tax_bps)
            if verdict.conclusive:
                self._store(verdict, expires_at)
            out[need.token.symbol] = verdict
            if not verdict.safe:
                log.warning("%s", verdict.reason, extra={"token": need.token.symbol,
                                                         "pool": verdict.pool})
        return out

    def _store(self, verdict: TokenVerdict, expires_at: datetime) -> None:
        self.ledger.record_token_verdict(
            env=self.config.env, token=verdict.token.address, symbol=verdict.token.symbol,
            pool=verdict.pool, block_number=verdict.block_number, safe=verdict.safe,
            reason=verdict.reason, expires_at=expires_at, buy_tax_bps=verdict.buy_tax_bps,
            transfer_tax_bps=verdict.transfer_tax_bps, sell_tax_bps=verdict.sell_tax_bps,
            details={**verdict.details, "token_in": verdict.token_in,
                     "probed_amount_in": str(verdict.probed_amount_in)},
        )
        self._cache[verdict.token.address] = (verdict, expires_at)
        self._distrusted.discard(verdict.token.address)


def _from_row(row: TokenVerdictRow, token: Token) -> TokenVerdict:
    details = dict(row.details)
    return TokenVerdict(
        token=token, pool=row.pool, block_number=row.block_number, safe=row.safe,
        reason=row.reason, buy_tax_bps=row.buy_tax_bps, transfer_tax_bps=row.transfer_tax_bps,
        sell_tax_bps=row.sell_tax_bps, token_in=str(details.get("token_in", "")),
        probed_amount_in=int(details.get("probed_amount_in", 0)),
        details={k: v for k, v in details.items() if isinstance(v, int | float | str)},
    )
