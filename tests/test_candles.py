"""Candles: real swaps on the dev chain -> ingestion -> polars candles equal to hand-computed
OHLCV; the Parquet store; user-brought OHLCV with a schema check."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ConfigError
from dexpilot.ledger.store import Ledger
from dexpilot.market.candles import (
    ALL_VENUES,
    CANDLE_SCHEMA,
    TRADE_SCHEMA,
    CandleStore,
    build_candles,
    default_candle_root,
    load_candles,
    read_ohlcv,
    refresh_candles,
    validate_candles,
)
from dexpilot.market.ingest import SwapIngestor
from dexpilot.market.pools import PoolKind
from tests.fixtures.analysis import SwapDone, Swapper

PAIR = "WETH/USDC"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _expected(
    swaps: list[SwapDone], minutes: int = 1,
) -> dict[tuple[str, datetime], dict[str, Any]]:
    """OHLCV by (venue, window start), computed by hand from the swaps' measured amounts."""
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    groups: dict[tuple[str, datetime], list[SwapDone]] = defaultdict(list)
    for swap in sorted(swaps, key=lambda s: s.block_number):
        epoch = int(swap.block_time.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % (60 * minutes), UTC)
        groups[(swap.pool.venue, start)].append(swap)
        groups[(ALL_VENUES, start)].append(swap)
    for key, group in groups.items():
        prices, base, quote = [], 0.0, 0.0
        for swap in group:
            raw0, raw1 = swap.base_quote
            b = raw0 / 10**swap.pool.token0.decimals
            q = raw1 / 10**swap.pool.token1.decimals
            prices.append(q / b)
            base += b
            quote += q
        out[key] = {"open": prices[0], "high": max(prices), "low": min(prices),
                    "close": prices[-1], "volume_base": base, "volume_quote": quote,
                    "trades": len(group)}
    return out


def _as_dict(candles: pl.DataFrame) -> dict[tuple[str, datetime], dict[str, Any]]:
    return {(r["venue"], r["ts"]): {k: r[k] for k in ("open", "high", "low", "close",
                                                       "volume_base", "volume_quote", "trades")}
            for r in candles.iter_rows(named=True)}


def test_candles_from_swaps_on_the_dev_chain_match_hand_computed_ohlcv(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
    tmp_path: Path,
) -> None:
    pools = [p for p in devnet.pool_refs() if p.pair == PAIR]
    uni = swapper.pool("uniswap-v2", PAIR)
    sushi = swapper.pool("sushiswap-v2", PAIR)
    v3 = next(p for p in pools if p.kind is PoolKind.V3 and p.fee_ppm == 500)
    weth, usdc = uni.token0, uni.token1
    assert (weth.symbol, usdc.symbol) == ("WETH", "USDC")
    now = swapper.latest_time()
    m0 = now - now % 60 + 120  # a minute boundary in the near future
    start = swapper.head() + 1
    plan = [  # (pool, sell token, amount, seconds after m0)
        (uni, weth, 2 * 10**18, 3), (sushi, usdc, 4_000 * 10**6, 17), (v3, weth, 10**18, 31),
        (uni, usdc, 9_000 * 10**6, 59),  # last second of minute 0
        (uni, weth, 5 * 10**17, 60),  # first second of minute 1
        (v3, usdc, 1_234_567_891, 95), (sushi, weth, 3 * 10**18, 100),
        (v3, weth, 7 * 10**17, 200),  # minute 3; minute 2 has no swap
    ]
    swaps = [swapper.swap(pool, token, amount, at=m0 + dt) for pool, token, amount, dt in plan]
    assert swaps[0].block_time == datetime.fromtimestamp(m0 + 3, UTC)

    report = SwapIngestor(chain, market_ledger, pools, start_block=start).run()
    assert report.inserted == len(plan)
    store = CandleStore(tmp_path / "candles")
    refresh_candles(market_ledger, pools, store, "1m", since=report.changed_since)

    candles = load_candles(PAIR, "1m", root=store.root)
    assert dict(candles.schema) == dict(CANDLE_SCHEMA)
    expected = _expected(swaps)
    got = _as_dict(candles)
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert got[key] == pytest.approx(want, rel=1e-12), key
    # Spot-check one candle fully by hand: uniswap-v2, minute 0 = swaps 0 and 3.
    first, third = swaps[0], swaps[3]
    p0 = (first.amount_out / 1e6) / (first.amount_in / 1e18)
    p3 = (third.amount_in / 1e6) / (third.amount_out / 1e18)
    assert p3 > p0  # buying WETH pays more than selling it fetches
    assert got[("uniswap-v2", datetime.fromtimestamp(m0, UTC))] == pytest.approx({
        "open": p0, "high": p3, "low": p0, "close": p3,
        "volume_base": first.amount_in / 1e18 + third.amount_out / 1e18,
        "volume_quote": first.amount_out / 1e6 + third.amount_in / 1e6, "trades": 2})
    assert {r["pool"] for r in candles.iter_rows(named=True) if r["venue"] == ALL_VENUES} == {""}
    assert set(candles["pair"]) == {PAIR}

    # 5-minute candles from the same events: one window per venue.
    refresh_candles(market_ledger, pools, store, "5m")
    five, expected_five = _as_dict(store.load(PAIR, "5m")), _expected(swaps, minutes=5)
    assert five.keys() == expected_five.keys()
    for key, want in expected_five.items():
        assert five[key] == pytest.approx(want, rel=1e-12), key
    # A time range and a venue filter.
    window = load_candles(PAIR, "1m", datetime.fromtimestamp(m0 + 60, UTC),
                          datetime.fromtimestamp(m0 + 180, UTC), venue=ALL_VENUES,
                          root=store.root)
    assert window["ts"].to_list() == [datetime.fromtimestamp(m0 + 60, UTC)]
    assert window["trades"].to_list() == [3]


def test_refresh_after_a_reorg_drops_the_orphaned_candle(
    chain: RpcClient, devnet: DevnetManifest, swapper: Swapper, market_ledger: Ledger,
    tmp_path: Path,
) -> None:
    uni = swapper.pool("uniswap-v2", PAIR)
    now = swapper.latest_time()
    m0 = now - now % 60 + 120
    start = swapper.head() + 1
    swapper.swap(uni, uni.token0, 10**18, at=m0 + 1)
    fork = chain.request("evm_snapshot")
    swapper.swap(uni, uni.token0, 10**18, at=m0 + 61)  # minute 1, to be orphaned
    ingestor = SwapIngestor(chain, market_ledger, [uni], start_block=start, reorg_depth=3)
    store = CandleStore(tmp_path / "candles")
    refresh_candles(market_ledger, [uni], store, "1m", since=ingestor.run().changed_since)
    assert store.load(PAIR, "1m", venue="uniswap-v2").height == 2
    chain.request("evm_revert", [fork])
    swapper.swap(uni, uni.token1, 100 * 10**6, at=m0 + 2)  # minute 0 instead
    report = ingestor.run()
    assert (report.removed, report.inserted) == (1, 1)
    refresh_candles(market_ledger, [uni], store, "1m", since=report.changed_since)
    candles = store.load(PAIR, "1m", venue="uniswap-v2")
    assert candles["ts"].to_list() == [datetime.fromtimestamp(m0, UTC)]
    assert candles["trades"].to_list() == [2]


def _trades(rows: list[tuple[int, int, int, str, float, float]]) -> pl.DataFrame:
    """(seconds after T0, block, log index, venue, price, base volume) -> a trades frame."""
    return pl.DataFrame(
        {"ts": [T0 + timedelta(seconds=r[0]) for r in rows],
         "block_number": [r[1] for r in rows], "log_index": [r[2] for r in rows],
         "pair": [PAIR] * len(rows), "venue": [r[3] for r in rows],
         "pool": ["0x" + r[3][0] * 40 for r in rows], "price": [r[4] for r in rows],
         "volume_base": [r[5] for r in rows], "volume_quote": [r[4] * r[5] for r in rows]},
        schema=dict(TRADE_SCHEMA))


def test_open_and_close_follow_chain_order_within_a_window() -> None:
    # Same timestamp (one block): log index decides; rows arrive shuffled.
    trades = _trades([(10, 5, 7, "b", 103.0, 1.0), (10, 5, 2, "a", 101.0, 2.0),
                      (10, 5, 4, "b", 99.0, 1.0), (70, 9, 0, "a", 100.0, 1.0)])
    candles = build_candles(trades, "1m")
    row = candles.filter((pl.col("venue") == ALL_VENUES) & (pl.col("ts") == T0)).row(
        0, named=True)
    assert (row["open"], row["high"], row["low"], row["close"], row["trades"]) == (
        101.0, 103.0, 99.0, 103.0, 3)
    assert row["volume_base"] == 4.0 and row["volume_quote"] == 103.0 + 202.0 + 99.0
    only_pools = build_candles(trades, "1m", aggregate=False)
    assert ALL_VENUES not in set(only_pools["venue"])
    assert candles.columns == list(CANDLE_SCHEMA)
    assert build_candles(trades.clear(), "1m").schema == pl.Schema(CANDLE_SCHEMA)
    with pytest.raises(ConfigError, match="interval"):
        build_candles(trades, "1 minute")


def test_store_merges_rewritten_candles_and_loads_ranges(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    first = build_candles(_trades([(5, 1, 0, "a", 100.0, 1.0)]), "1m")
    store.write(first, "1m")
    again = build_candles(_trades([(5, 1, 0, "a", 100.0, 1.0), (30, 2, 0, "a", 90.0, 1.0),
                                   (65, 3, 0, "a", 95.0, 1.0)]), "1m")
    store.write(again, "1m")
    stored = store.load(PAIR, "1m")
    assert stored.height == 4  # (a, all) x 2 minutes, the first minute replaced
    assert stored.filter(pl.col("ts") == T0)["low"].to_list() == [90.0, 90.0]
    assert store.path(PAIR, "1m") == tmp_path / "1m" / "WETH-USDC.parquet"
    assert store.load("WBTC/USDC", "1m").is_empty()
    with pytest.raises(ValueError, match="naive"):
        store.load(PAIR, "1m", datetime(2026, 1, 1))


def test_default_candle_root_sits_beside_the_sqlite_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEXPILOT_CANDLES_DIR", raising=False)
    assert default_candle_root(f"sqlite:///{tmp_path}/x/ledger.db") == tmp_path / "x/candles"
    with pytest.raises(ConfigError, match="DEXPILOT_CANDLES_DIR"):
        default_candle_root("postgresql://u:secret@db/ledger")
    monkeypatch.setenv("DEXPILOT_CANDLES_DIR", str(tmp_path / "elsewhere"))
    assert default_candle_root("postgresql://u@db/ledger") == tmp_path / "elsewhere"


GOOD_CSV = """ts,open,high,low,close,volume
2026-03-01T12:00:00Z,3000.5,3010,2990,3005,12.5
2026-03-01T12:01:00Z,3005,3006,2999.5,3001,3
"""


def test_user_brought_csv_and_parquet_become_candles(tmp_path: Path) -> None:
    csv = tmp_path / "eth.csv"
    csv.write_text(GOOD_CSV)
    candles = read_ohlcv(csv, pair=PAIR)
    assert dict(candles.schema) == dict(CANDLE_SCHEMA)
    assert candles["ts"].to_list() == [T0, T0 + timedelta(minutes=1)]
    assert candles["venue"].to_list() == ["external"] * 2
    assert candles["volume_quote"].to_list() == [12.5 * 3005, 3 * 3001.0]
    parquet = tmp_path / "eth.parquet"
    candles.write_parquet(parquet)
    assert read_ohlcv(parquet).equals(candles)


@pytest.mark.parametrize(("text", "message"), [
    (GOOD_CSV.replace(",close,", ",last,"), "column 'close' is missing"),
    (GOOD_CSV.replace("3005,12.5", "n/a,12.5"), "column 'close' has type String"),
    (GOOD_CSV.replace("2026-03-01T12:00:00Z", "yesterday"), "column 'ts'"),
    (GOOD_CSV.replace("3010,2990", "2000,2990"), "inconsistent candle"),
    (GOOD_CSV.replace("3005,12.5", ",12.5"), "empty values"),
])
def test_ill_shaped_ohlcv_is_refused_naming_the_column(
    tmp_path: Path, text: str, message: str,
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_ohlcv(path, pair=PAIR)


def test_ohlcv_without_a_pair_or_of_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eth.csv"
    path.write_text(GOOD_CSV)
    with pytest.raises(ConfigError, match="column 'pair' is missing"):
        read_ohlcv(path)
    with pytest.raises(ConfigError, match="not found"):
        read_ohlcv(tmp_path / "nope.csv")
    (tmp_path / "eth.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        read_ohlcv(tmp_path / "eth.json")
    frame = pl.DataFrame({"ts": [1], "pair": [PAIR]})
    with pytest.raises(ConfigError, match=r"column 'ts' has type Int64.*column 'venue' is "
                                          r"missing"):
        validate_candles(frame)
