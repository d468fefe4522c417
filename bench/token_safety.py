"""The token-safety gate's cost: a cold verdict (simulated) and a cached one, per token count.

Starts its own dev chain with extra tokens (``bench/_market.py``: ``X<i>`` with V2 pools
against USDC), then for 1, 10 and 50 tokens bought at once: a fresh gate and ledger (cold:
every token simulated, all in one JSON-RPC batch), then the same buys again on the same gate
(cached in memory: no simulation), and on a new gate over the same ledger (cached in the
ledger: no simulation, one read per token). Round trips are ``RpcClient.round_trips`` of the
gate's client; times are wall-clock medians over the repetitions.

    .venv/bin/python bench/token_safety.py [--tokens 1,10,50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _market import bench_config, bench_market

from dexpilot.chain.reader import ChainReader
from dexpilot.chain.rpc import RpcClient
from dexpilot.ledger import Ledger
from dexpilot.routing.router import Route, Router
from dexpilot.strategy.intent import OrderIntent
from dexpilot.trading.token_safety import TokenSafetyGate
from dexpilot.venues.registry import venues_from_config

BUY_USDC = 500 * 10**6  # each token bought for 500 USDC


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1,10,50")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.tokens.split(",")]
    pools = 12 + 4 * max(counts)  # each extra token has four pools (USDC, WETH; two venues)
    with tempfile.TemporaryDirectory() as tmp, bench_market(Path(tmp), pools) as m:
        config = bench_config(m, pools, f"sqlite:///{Path(tmp) / 'unused.db'}")
        usdc = config.token("USDC")
        extra = [t.token() for t in config.tokens if t.symbol.startswith("X")]
        client = RpcClient([m.manifest.rpc_url], timeout=30.0)
        reader = ChainReader(client, config.chain.multicall,
                             expected_chain_id=config.chain.chain_id)
        venues = venues_from_config(config, client)
        router = Router(venues, native=config.token(config.chain.weth))
        snapshot = reader.snapshot(config.pool_refs(), [t.token() for t in config.tokens],
                                   [config.wallets.hot])
        gas = 10**9
        print(f"{'tokens':>6} {'case':<14} {'round trips':>11} {'median ms':>10} "
              f"{'per token':>10}")
        for count in counts:
            buys: list[tuple[OrderIntent, Route]] = []
            for i, token in enumerate(extra[:count]):
                intent = OrderIntent(f"b{i}", "bench", usdc, token, BUY_USDC)
                buys.append((intent, router.route(intent, snapshot, gas_price_wei=gas)))
            if len(buys) != count:
                raise SystemExit(f"only {len(buys)} extra tokens deployed, {count} asked")
            rows: dict[str, list[tuple[int, float]]] = {"cold": [], "memory cache": [],
                                                        "ledger cache": []}
            for r in range(args.repeat):
                url = f"sqlite:///{Path(tmp) / f'g{count}-{r}.db'}"
                ledger = Ledger(url)
                ledger.upgrade()
                gate = TokenSafetyGate(config, client, ledger)
                for case, subject in (("cold", gate), ("memory cache", gate),
                                      ("ledger cache", TokenSafetyGate(config, client, ledger))):
                    before = client.round_trips
                    started = time.perf_counter()
                    verdicts = subject.verdicts(buys, snapshot)
                    elapsed = time.perf_counter() - started
                    assert all(v.safe for v in verdicts.values()), verdicts
                    rows[case].append((client.round_trips - before, elapsed))
                ledger.dispose()
            for case, values in rows.items():
                trips = statistics.median(v[0] for v in values)
                ms = statistics.median(v[1] for v in values) * 1000
                print(f"{count:>6} {case:<14} {trips:>11g} {ms:>10.1f} {ms / count:>10.2f}")
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
