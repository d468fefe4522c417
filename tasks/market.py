"""Market tasks: read a snapshot of every pool and balance, record and publish it."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dexpilot.chain.reader import ChainReader
from dexpilot.config import AppConfig
from dexpilot.ledger import Ledger
from dexpilot.market.pools import MarketSnapshot
from dexpilot.market.report import market_report_markdown
from tasks.policy import NETWORK_RETRIES, NETWORK_RETRY_DELAYS, retry_on_network_errors


@task(retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS,
      retry_condition_fn=retry_on_network_errors, timeout_seconds=60,
      cache_policy=NO_CACHE)
def read_market(config: AppConfig) -> MarketSnapshot:
    with config.chain.client() as client:
        reader = ChainReader(client, config.chain.multicall,
                             expected_chain_id=config.chain.chain_id)
        tokens = [t.token() for t in config.tokens]
        return reader.snapshot(config.pool_refs(), tokens, [config.wallets.hot])


@task(cache_policy=NO_CACHE)
def record_balances(config: AppConfig, snapshot: MarketSnapshot) -> int:
    ledger = Ledger(config.ledger.url)
    ledger.upgrade()
    by_wallet: dict[str, dict[str, int]] = {}
    for (wallet, token), amount in snapshot.token_balances.items():
        by_wallet.setdefault(wallet, {})[token] = amount
    try:
        return sum(len(ledger.record_balance_snapshots(held, wallet=wallet,
                                                       block_number=snapshot.block_number))
                   for wallet, held in by_wallet.items())
    finally:
        ledger.dispose()


@task(cache_policy=NO_CACHE)
def publish_market_report(config: AppConfig, snapshot: MarketSnapshot) -> str:
    markdown = market_report_markdown(snapshot, config.env)
    create_markdown_artifact(markdown=markdown, key=f"market-{config.env}",
                             description="pools, prices per venue, cross-venue spreads")
    return markdown
