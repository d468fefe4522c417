"""Decision latency: from the start of the market snapshot to the first swap broadcast.

Starts its own dev chain, adds V2 pools with liquidity until the market has the largest pool
count asked for (see ``bench/_market.py``), lets one arbitrage cycle close the dev market's
built-in spread, then opens one profitable gap (WETH 2 % dearer on sushiswap-v2) and saves
the chain (``evm_snapshot``). Every repetition goes back to that state (``evm_revert``) and
gets a fresh runtime and ledger, so each one sees the same gap and trades the same way.

Timed per repetition, for 10/50/200 pools:

- core: ``run_cycle`` called directly (``call_directly`` runs each step);
- flow: the ``trading-session`` flow with ``max_cycles=1`` on a throwaway Prefect server
  (``prefect_test_harness``), each step a Prefect task (``run_step_as_task``).

The clock starts when the snapshot step starts and stops at the executor's ``swap_sent``
checkpoint of the first leg (its ``eth_sendRawTransaction`` has returned). That span covers
snapshot, gas price, signals, plan, route, token safety (every repetition has a fresh
ledger, so every token is simulated cold), risk and the first leg's execution up to the send:
the order row, the ``eth_simulateV1`` of approval and swap, the (exact) token approval with
its receipt, the ``eth_call`` simulation after it,
signing and the broadcast. The first repetition of each case is a warm-up and not counted.

    .venv/bin/python bench/decision_latency.py [--pools 10,50,200] [--repeat 10]
        [--flow-repeat 10] [--no-flow]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _market import (
    ANVIL_KEY_1,
    BenchMarket,
    StepProbe,
    bench_config,
    bench_market,
    percentile,
    quiet_market,
)

from dexpilot.execution.wallet import HotWallet
from dexpilot.trading.cycle import TradingRuntime, call_directly, run_cycle

STEPS = ["snapshot", "gas_price", "signals", "plan", "route", "token_safety", "risk"]
# Phases of the first leg inside the execute step, between executor checkpoints.
PHASES = [("execute", "order_written", "to order row"),
          ("order_written", "swap_signed", "approve+sim+sign"),
          ("swap_signed", "swap_sent", "broadcast")]


class Probe(StepProbe):
    def sample(self, outcome: object) -> Sample:
        m = self.marks
        if "swap_sent" not in m:
            raise RuntimeError(f"the cycle sent no swap: {outcome}")
        steps = {s: m[f"{s}:end"] - m[s] for s in STEPS}
        steps["execute->sent"] = m["swap_sent"] - m["execute"]
        phases = {label: m[b] - m[a] for a, b, label in PHASES}
        trips = self.trips["swap_sent"] - self.trips["snapshot"]
        return Sample(m["swap_sent"] - m["snapshot"], steps, phases, trips)


@dataclass
class Sample:
    total: float
    steps: dict[str, float]
    phases: dict[str, float]
    round_trips: int  # JSON-RPC round trips from snapshot start to the first send


# -- core -------------------------------------------------------------------------------
def core_once(market: BenchMarket, pools: int, ledger_dir: Path, tag: str) -> Sample:
    market.restore()
    config = bench_config(market, pools, f"sqlite:///{ledger_dir / f'{tag}.db'}")
    rt = TradingRuntime.build(config, HotWallet(ANVIL_KEY_1))
    try:
        probe = Probe()
        probe.attach(rt)
        report = run_cycle(rt, tag, run_step=probe.runner(call_directly))
        return probe.sample(report)
    finally:
        rt.close()


# -- inside the session flow ------------------------------------------------------------
@contextmanager
def prefect_server(home: Path) -> Iterator[None]:
    """A throwaway Prefect server (SQLite, subprocess) that this process's clients talk to."""
    os.environ.update({"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    import prefect.settings as ps
    from prefect.testing.utilities import prefect_test_harness

    with (ps.temporary_settings(updates={ps.PREFECT_HOME: home,
                                         ps.PREFECT_SERVER_ANALYTICS_ENABLED: False}),
          prefect_test_harness(server_startup_timeout=120)):
        quiet_prefect_console()
        yield


def quiet_prefect_console() -> None:
    """Keep Prefect's run logs off the console (they still go to the API, as in a worker)."""
    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

    if not PROCESS_LOGGING_CONFIG:
        setup_logging()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)


def flow_samples(market: BenchMarket, pool_counts: Sequence[int], repeat: int,
                 ledger_dir: Path, home: Path) -> tuple[dict[int, list[Sample]], float]:
    started = time.perf_counter()
    with prefect_server(home):
        startup = time.perf_counter() - started
        import flows.trading_session as session_module
        from settings.blocks import DexpilotEnvironment

        # The flow hands ``run_step_as_task`` (a Prefect task per step) to the cycle; wrap
        # it where the flow looks it up, to mark each step's start and end and, through the
        # runtime that every step gets first, the executor's checkpoints.
        original = session_module.run_step_as_task  # type: ignore[attr-defined]
        probe = Probe()
        session_module.run_step_as_task = probe.runner(original)  # type: ignore[attr-defined]
        results: dict[int, list[Sample]] = {}
        try:
            for pools in pool_counts:
                results[pools] = []
                for rep in range(repeat + 1):
                    market.restore()
                    tag = f"flow{pools}-{rep}"
                    config = bench_config(market, pools,
                                          f"sqlite:///{ledger_dir / f'{tag}.db'}")
                    # What `push_settings("test")` saves, with this market's pools and tokens.
                    DexpilotEnvironment(env="test", config=config, sources=["bench"],
                                        pushed_at=datetime.now(UTC).isoformat()
                                        ).save("test", overwrite=True)
                    probe.clear()
                    summary = session_module.trading_session(env="test", max_cycles=1,
                                                             interval_s=0)
                    sample = probe.sample(summary)
                    if rep:  # the first is a warm-up
                        results[pools].append(sample)
        finally:
            session_module.run_step_as_task = original  # type: ignore[attr-defined]
    return results, startup


# -- output -----------------------------------------------------------------------------
def ms(values: Sequence[float]) -> tuple[float, float]:
    scaled = [v * 1000 for v in values]
    return statistics.median(scaled), percentile(scaled, 90)


def print_results(title: str, results: dict[int, list[Sample]]) -> None:
    print(f"\n{title}: snapshot start -> first swap sent (ms)")
    header = (f"{'pools':>6} {'n':>3} {'median':>8} {'p90':>8} {'min':>8} {'max':>8} "
              f"{'RPC round trips':>16}")
    print(header)
    print("-" * len(header))
    for pools, samples in results.items():
        totals = [s.total * 1000 for s in samples]
        med, p90 = ms([s.total for s in samples])
        trips = sorted(s.round_trips for s in samples)
        shown = f"{trips[0]}-{trips[-1]}" if trips[0] != trips[-1] else str(trips[0])
        print(f"{pools:>6} {len(samples):>3} {med:>8.1f} {p90:>8.1f} {min(totals):>8.1f} "
              f"{max(totals):>8.1f} {shown:>16}")
    print("by RPC round trips to the send (one more = a receipt re-polled after 50 ms):")
    for pools, samples in results.items():
        groups: dict[int, list[float]] = {}
        for sample in samples:
            groups.setdefault(sample.round_trips, []).append(sample.total * 1000)
        print(f"{pools:>6}  " + "; ".join(
            f"{trips} round trips: n={len(v)}, median {statistics.median(v):.1f}"
            for trips, v in sorted(groups.items())))
    columns = [*STEPS, "execute->sent"]
    print(f"\n{title}: per-step median (ms); execute->sent = execute step start to first send")
    header = f"{'pools':>6} " + " ".join(f"{c:>13}" for c in columns) + f" {'sum':>8}"
    print(header)
    print("-" * len(header))
    for pools, samples in results.items():
        meds = [statistics.median(s.steps[c] * 1000 for s in samples) for c in columns]
        print(f"{pools:>6} " + " ".join(f"{v:>13.1f}" for v in meds) + f" {sum(meds):>8.1f}")
    labels = [label for _, _, label in PHASES]
    print(f"\n{title}: first leg inside execute, median (ms)")
    header = f"{'pools':>6} " + " ".join(f"{c:>17}" for c in labels)
    print(header)
    print("-" * len(header))
    for pools, samples in results.items():
        meds = [statistics.median(s.phases[c] * 1000 for s in samples) for c in labels]
        print(f"{pools:>6} " + " ".join(f"{v:>17.1f}" for v in meds))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", default="10,50,200",
                        help="comma-separated pool counts (>= 10)")
    parser.add_argument("--repeat", type=int, default=10, help="core repetitions per count")
    parser.add_argument("--flow-repeat", type=int, default=10,
                        help="session-flow repetitions per count")
    parser.add_argument("--no-flow", action="store_true", help="core only (no Prefect)")
    args = parser.parse_args(argv)
    pool_counts = [int(p) for p in args.pools.split(",")]
    os.environ.setdefault("DEXPILOT_HOT_WALLET_KEY", ANVIL_KEY_1)

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ledgers = root / "ledgers"
        ledgers.mkdir()
        with bench_market(root / "chain", max(pool_counts)) as market:
            setup = time.perf_counter() - began
            quiet_cycles = quiet_market(market, ledgers)
            market.push_gap()
            market.save()
            print(f"decision latency: dev chain with {len(market.extra_pools)} extra V2 pools "
                  f"(setup {setup:.1f} s), {quiet_cycles} cycle(s) closed the built-in spread, "
                  f"then WETH pushed 2 % dearer on sushiswap-v2; {os.cpu_count()} CPUs")
            core: dict[int, list[Sample]] = {}
            for pools in pool_counts:
                samples = [core_once(market, pools, ledgers, f"core{pools}-{rep}")
                           for rep in range(args.repeat + 1)]
                core[pools] = samples[1:]  # the first is a warm-up
            print_results("core (run_cycle, steps called directly)", core)
            if not args.no_flow:
                flow, startup = flow_samples(market, pool_counts, args.flow_repeat, ledgers,
                                             root / "prefect")
                print(f"\n(Prefect test server started in {startup:.1f} s)")
                print_results("session flow (trading-session, steps as Prefect tasks)", flow)
    print(f"\ntotal wall time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
