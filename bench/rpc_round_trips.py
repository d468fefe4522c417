"""JSON-RPC round trips per trading cycle vs pool count (10/50/200 pools).

Starts its own dev chain, adds V2 pools with liquidity up to the largest pool count (see
``bench/_market.py``) and lets one arbitrage cycle close the dev market's built-in spread;
that quiet market is saved (``evm_snapshot``). For each pool count and repetition, back on the
quiet market (``evm_revert``) with a fresh runtime and ledger:

- "nothing": one cycle on the quiet market (finds no profitable order, trades nothing);
- "trade": WETH is pushed 2 % dearer on sushiswap-v2 (by another account, not counted), then
  one cycle that trades the two-leg arbitrage to the end (both receipts settled).

Counted from ``RpcClient.round_trips`` (one per HTTP request; a JSON-RPC batch is one) of the
runtime's client, which every step, venue and the executor share, per step and up to the first
swap's broadcast (``swap_sent`` checkpoint). The claim checked: reading the market (the
snapshot step) costs O(1) round trips whatever the pool count.

    .venv/bin/python bench/rpc_round_trips.py [--pools 10,50,200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _market import (
    ANVIL_KEY_1,
    BenchMarket,
    StepProbe,
    bench_config,
    bench_market,
    quiet_market,
)

from dexpilot.chain.rpc import RpcClient
from dexpilot.execution.wallet import HotWallet
from dexpilot.trading.cycle import TradingRuntime, call_directly, run_cycle

STEPS = ["reconcile", "snapshot", "gas_price", "signals", "plan", "route", "risk", "execute"]
Row = dict[str, int | None]


def step_trips(probe: StepProbe) -> Row:
    row: Row = {}
    for step in STEPS:
        end = f"{step}:end"
        row[step] = probe.trips[end] - probe.trips[step] if end in probe.trips else None
    first, last = probe.trips["reconcile"], max(probe.trips.values())
    row["total"] = last - first
    row["to 1st send"] = (probe.trips["swap_sent"] - probe.trips["snapshot"]
                          if "swap_sent" in probe.trips else None)
    return row


@dataclass
class Measured:
    nothing: Row
    trade: Row
    snapshot_s: float
    requests: dict[str, Counter[str]]  # per cycle kind: HTTP requests by JSON-RPC method(s)


class RequestCounter:
    """Counts a client's HTTP requests by JSON-RPC method; a batch shows as ``[a+b]``."""

    def __init__(self, client: RpcClient) -> None:
        self.counts: Counter[str] = Counter()
        post = client._post

        def counting_post(payload: Any) -> Any:
            if isinstance(payload, list):
                key = "[" + "+".join(sorted({str(c.get("method")) for c in payload})) + "]"
            else:
                key = str(payload.get("method"))
            self.counts[key] += 1
            return post(payload)

        client._post = counting_post  # type: ignore[method-assign]

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def measure(market: BenchMarket, pools: int, ledger_dir: Path, tag: str) -> Measured:
    """Round trips of a cycle that finds nothing, then of one that trades; snapshot time."""
    market.restore()
    config = bench_config(market, pools, f"sqlite:///{ledger_dir / f'{tag}.db'}")
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        counter = RequestCounter(rt.client)
        requests = {}
        probe = StepProbe()
        probe.attach(rt)
        report = run_cycle(rt, f"{tag}-nothing", run_step=probe.runner(call_directly))
        if report.intents or report.executions:
            raise RuntimeError(f"the quiet market traded: {report}")
        nothing = step_trips(probe)
        requests["nothing"] = counter.take()
        snapshot_s = probe.marks["snapshot:end"] - probe.marks["snapshot"]
        market.push_gap()
        probe.clear()
        report = run_cycle(rt, f"{tag}-trade", run_step=probe.runner(call_directly))
        requests["trade"] = counter.take()
        if len(report.executions) != 2 or not all(e.filled for e in report.executions):
            raise RuntimeError(f"the arbitrage did not fill both legs: {report}")
        return Measured(nothing, step_trips(probe), snapshot_s, requests)
    finally:
        rt.close()


def fmt(values: Sequence[int | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    lo, hi = min(present), max(present)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", default="10,50,200",
                        help="comma-separated pool counts (>= 10)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    pool_counts = [int(p) for p in args.pools.split(",")]
    os.environ.setdefault("DEXPILOT_HOT_WALLET_KEY", ANVIL_KEY_1)

    began = time.perf_counter()
    results: dict[tuple[int, str], list[Row]] = {}
    snapshot_ms: dict[int, list[float]] = {}
    requests: dict[tuple[int, str], Counter[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ledgers = root / "ledgers"
        ledgers.mkdir()
        with bench_market(root / "chain", max(pool_counts)) as market:
            quiet_market(market, ledgers)
            market.save()
            for pools in pool_counts:
                for rep in range(args.repeat):
                    got = measure(market, pools, ledgers, f"p{pools}-{rep}")
                    results.setdefault((pools, "nothing"), []).append(got.nothing)
                    results.setdefault((pools, "trade"), []).append(got.trade)
                    snapshot_ms.setdefault(pools, []).append(got.snapshot_s * 1000)
                    for kind, counts in got.requests.items():
                        requests.setdefault((pools, kind), Counter()).update(counts)

    print(f"JSON-RPC round trips per cycle ({args.repeat} repetitions each; a range is min-max)")
    columns = [*STEPS, "total", "to 1st send"]
    header = f"{'pools':>6} {'cycle':<8} " + " ".join(f"{c:>11}" for c in columns)
    print(header)
    print("-" * len(header))
    for (pools, kind), rows in results.items():
        print(f"{pools:>6} {kind:<8} " + " ".join(f"{fmt([r[c] for r in rows]):>11}"
                                                  for c in columns))
    print("\n(to 1st send: from the snapshot step's start to the first swap's broadcast)")
    print(f"\nHTTP requests per cycle by JSON-RPC method ([a+b]: one batch), mean of "
          f"{args.repeat}:")
    for (pools, kind), counts in requests.items():
        shown = ", ".join(f"{method} {n / args.repeat:.3g}" for method, n in counts.most_common())
        print(f"{pools:>6} {kind:<8} {shown}")
    print("\nsnapshot step: " + ", ".join(
        f"{pools} pools {statistics.median(v):.1f} ms" for pools, v in snapshot_ms.items())
        + " (median of the 'nothing' cycles)")
    reads = {r["snapshot"] for rows in results.values() for r in rows}
    verdict = "holds" if len(reads) == 1 else "does NOT hold"
    print(f"claim 'reading the market costs O(1) round trips regardless of pool count': "
          f"{verdict} (snapshot step: {sorted(v for v in reads if v is not None)} round trip(s) "
          f"for {', '.join(map(str, pool_counts))} pools)")
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return 0 if len(reads) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
