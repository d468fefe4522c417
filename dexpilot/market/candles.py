"""OHLCV candles from swap events, with polars; stored as Parquet next to the ledger.

The candle contract (what the models and the backtest rely on) is ``CANDLE_SCHEMA``:

====================  ==========================  ===========================================
column                dtype                       meaning
====================  ==========================  ===========================================
``ts``                Datetime(us, UTC)           candle start; windows ``[ts, ts + interval)``
``pair``              String                      ``"BASE/QUOTE"`` as ``PoolRef.pair``
``venue``             String                      venue name; ``"all"`` for the cross-venue row
``pool``              String                      pool address; ``""`` for the cross-venue row
``open`` .. ``close`` Float64                     price of BASE (token0) in QUOTE (token1),
                                                  decimals applied, like ``PoolSnapshot.price()``
``volume_base``       Float64                     BASE traded, display units
``volume_quote``      Float64                     QUOTE traded, display units
``trades``            UInt32                      swaps in the window
====================  ==========================  ===========================================

Rows are sorted by ``pair, venue, pool, ts``. Only windows with at least one swap have a row
(no forward-filled gaps). **The price of a swap is its execution price**
``|amount1| / |amount0|`` in display units (net of what went in and out of the pool), for V2
and V3 alike, so venues are comparable and the cross-venue aggregate is one consistent
series; it includes the LP fee and the swap's own price impact. (V3's post-swap
``sqrtPriceX96`` is kept in the ledger for anyone who wants the mid price instead.) The
cross-venue row of a pair merges every pool's swaps in chain order (block, log index).

Storage: ``CandleStore(root)`` writes one Parquet file per interval and pair,
``<root>/<interval>/<BASE>-<QUOTE>.parquet`` (every venue's rows and the ``all`` rows in one
file); ``default_candle_root()`` is ``<directory of the SQLite ledger>/candles``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from dexpilot.errors import ConfigError
from dexpilot.ledger.store import Ledger
from dexpilot.market.ingest import stored_swaps
from dexpilot.market.pools import PoolRef

ALL_VENUES = "all"
CANDLE_SCHEMA: Mapping[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "pair": pl.String(),
    "venue": pl.String(),
    "pool": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume_base": pl.Float64(),
    "volume_quote": pl.Float64(),
    "trades": pl.UInt32(),
}
CANDLE_COLUMNS = tuple(CANDLE_SCHEMA)
# One row per swap, ready for ``build_candles``.
TRADE_SCHEMA: Mapping[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "block_number": pl.Int64(),
    "log_index": pl.Int64(),
    "pair": pl.String(),
    "venue": pl.String(),
    "pool": pl.String(),
    "price": pl.Float64(),
    "volume_base": pl.Float64(),
    "volume_quote": pl.Float64(),
}
_INTERVAL = re.compile(r"^[1-9]\d*(s|m|h|d)$")
CANDLES_DIR_ENV = "DEXPILOT_CANDLES_DIR"


class SwapLike(Protocol):
    """A stored or freshly decoded swap (``SwapEventRow`` or ``ingest.SwapEvent``)."""

    @property
    def pool(self) -> str: ...
    @property
    def block_number(self) -> int: ...
    @property
    def block_time(self) -> datetime: ...
    @property
    def log_index(self) -> int: ...
    @property
    def amount0_in(self) -> int: ...
    @property
    def amount1_in(self) -> int: ...
    @property
    def amount0_out(self) -> int: ...
    @property
    def amount1_out(self) -> int: ...


def check_interval(interval: str) -> str:
    """A polars duration of seconds, minutes, hours or days: ``"30s"``, ``"1m"``, ``"1h"``..."""
    if not isinstance(interval, str) or not _INTERVAL.match(interval):
        raise ConfigError(f"candle interval {interval!r} is not like '1m', '5m', '1h' or '1d'")
    return interval


# -- swaps -> trades -> candles ------------------------------------------------------------


def trades_from_swaps(swaps: Iterable[SwapLike], pools: Sequence[PoolRef]) -> pl.DataFrame:
    """One row per swap (``TRADE_SCHEMA``) with its execution price and volumes in display
    units. The float conversion happens here, from exact integers (``int / 10**decimals``)."""
    by_address = {p.address.lower(): p for p in pools}
    cols: dict[str, list[object]] = {name: [] for name in TRADE_SCHEMA}
    for swap in swaps:
        pool = by_address.get(swap.pool.lower())
        if pool is None:
            continue
        base_raw = abs(swap.amount0_in - swap.amount0_out)
        quote_raw = abs(swap.amount1_in - swap.amount1_out)
        if base_raw == 0 or quote_raw == 0:
            continue  # nothing traded (a zero swap, or a pure flash loan): no price
        base = base_raw / 10**pool.token0.decimals
        quote = quote_raw / 10**pool.token1.decimals
        for name, value in (
            ("ts", swap.block_time), ("block_number", swap.block_number),
            ("log_index", swap.log_index), ("pair", pool.pair), ("venue", pool.venue),
            ("pool", pool.address), ("price", quote / base), ("volume_base", base),
            ("volume_quote", quote),
        ):
            cols[name].append(value)
    return pl.DataFrame(cols, schema=dict(TRADE_SCHEMA))


def empty_candles() -> pl.DataFrame:
    return pl.DataFrame(schema=dict(CANDLE_SCHEMA))


def build_candles(trades: pl.DataFrame, interval: str = "1m", *,
                  aggregate: bool = True) -> pl.DataFrame:
    """Candles per pool and (``aggregate``) per pair across venues from a ``TRADE_SCHEMA``
    frame; returns a ``CANDLE_SCHEMA`` frame sorted by ``pair, venue, pool, ts``."""
    check_interval(interval)
    missing = [c for c in TRADE_SCHEMA if c not in trades.columns]
    if missing:
        raise ValueError(f"trades frame lacks column(s) {', '.join(missing)}")
    if trades.is_empty():
        return empty_candles()
    frames = [_ohlcv(trades, interval, "pool", ("pair", "venue", "pool"))]
    if aggregate:
        frames.append(
            _ohlcv(trades, interval, "pair", ("pair",)).with_columns(
                venue=pl.lit(ALL_VENUES), pool=pl.lit(""))
        )
    out = pl.concat([f.select(CANDLE_COLUMNS) for f in frames])
    return out.sort("pair", "venue", "pool", "ts")


def _ohlcv(trades: pl.DataFrame, interval: str, key: str, labels: tuple[str, ...]) -> pl.DataFrame:
    # group_by_dynamic needs the rows sorted by time within each group: sort by an integer
    # code of the group (a categorical's physical value: exact, and far cheaper to sort than
    # strings), then by chain order, so first/last are the first/last swap of the window.
    return (
        trades.lazy()
        .with_columns(_group=pl.col(key).cast(pl.Categorical).to_physical())
        .sort("_group", "ts", "block_number", "log_index")
        .group_by_dynamic("ts", every=interval, closed="left", label="left",
                          group_by="_group", start_by="window")
        .agg(
            *(pl.col(c).first() for c in labels),
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume_base=pl.col("volume_base").sum(),
            volume_quote=pl.col("volume_quote").sum(),
            trades=pl.len().cast(pl.UInt32),
        )
        .drop("_group")
        .collect()
    )


# -- schema checks and user-brought OHLCV ---------------------------------------------------


def validate_candles(frame: pl.DataFrame, *, source: str = "candles") -> pl.DataFrame:
    """Check ``frame`` against the candle contract; numeric columns of another numeric type
    are cast, anything else is refused with a ``ConfigError`` naming the column."""
    problems = []
    casts = []
    for name, dtype in CANDLE_SCHEMA.items():
        if name not in frame.columns:
            problems.append(f"column {name!r} is missing")
            continue
        actual = frame.schema[name]
        if actual == dtype:
            continue
        if name == "ts":
            if isinstance(actual, pl.Datetime):
                zone = actual.time_zone
                expr = pl.col("ts").dt.cast_time_unit("us")
                expr = (expr.dt.replace_time_zone("UTC") if zone is None
                        else expr.dt.convert_time_zone("UTC"))
                casts.append(expr)
            else:
                problems.append(f"column 'ts' has type {actual}, expected a UTC Datetime")
        elif dtype == pl.String():
            problems.append(f"column {name!r} has type {actual}, expected String")
        elif actual.is_numeric():
            casts.append(pl.col(name).cast(dtype))
        else:
            problems.append(f"column {name!r} has type {actual}, expected {dtype}")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    out = frame.with_columns(casts).select(CANDLE_COLUMNS) if casts else frame.select(
        CANDLE_COLUMNS)
    nulls = [c for c in CANDLE_COLUMNS if out[c].null_count()]
    if nulls:
        raise ConfigError(f"{source}: column(s) {', '.join(nulls)} have empty values")
    bad = out.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") <= 0) | (pl.col("volume_base") < 0) | (pl.col("volume_quote") < 0)
    )
    if not bad.is_empty():
        row = bad.row(0, named=True)
        raise ConfigError(f"{source}: inconsistent candle at {row['ts']} ({row['pair']}): "
                          "needs 0 < low <= open, close <= high and volumes >= 0")
    return out.sort("pair", "venue", "pool", "ts")


def read_ohlcv(
    path: str | Path,
    *,
    pair: str | None = None,
    venue: str = "external",
    pool: str = "",
) -> pl.DataFrame:
    """Read user-brought OHLCV (Parquet, or CSV with an ISO-8601 ``ts``) into the candle
    contract. ``pair``/``venue``/``pool`` fill those columns when the file has none;
    ``volume_quote`` defaults to ``volume_base * close`` and ``trades`` to 0 when missing.
    A missing or ill-typed column is a ``ConfigError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"OHLCV file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix == ".csv":
            frame = pl.read_csv(path, try_parse_dates=True)
        else:
            raise ConfigError(f"{path}: OHLCV must be a .parquet or .csv file")
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(f"{path}: not readable as {suffix[1:]}: {exc}") from exc
    if "volume" in frame.columns and "volume_base" not in frame.columns:
        frame = frame.rename({"volume": "volume_base"})
    fills: list[pl.Expr] = []
    if "pair" not in frame.columns:
        if pair is None:
            raise ConfigError(f"{path}: column 'pair' is missing (or pass pair='BASE/QUOTE')")
        fills.append(pl.lit(pair).alias("pair"))
    if "venue" not in frame.columns:
        fills.append(pl.lit(venue).alias("venue"))
    if "pool" not in frame.columns:
        fills.append(pl.lit(pool).alias("pool"))
    if "trades" not in frame.columns:
        fills.append(pl.lit(0, dtype=pl.UInt32).alias("trades"))
    frame = frame.with_columns(fills)
    if ("volume_quote" not in frame.columns and "volume_base" in frame.columns
            and "close" in frame.columns and frame.schema["volume_base"].is_numeric()
            and frame.schema["close"].is_numeric()):
        frame = frame.with_columns(volume_quote=pl.col("volume_base") * pl.col("close"))
    if "ts" in frame.columns and frame.schema["ts"] == pl.String():
        raise ConfigError(f"{path}: column 'ts' is not a date-time (ISO 8601 expected)")
    return validate_candles(frame, source=str(path))


# -- storage ---------------------------------------------------------------------------------


def default_candle_root(ledger_url: str | None = None) -> Path:
    """``$DEXPILOT_CANDLES_DIR``, else ``candles/`` beside the SQLite ledger file (the dev
    ledger by default). A PostgreSQL ledger has no directory: set the variable."""
    if os.environ.get(CANDLES_DIR_ENV):
        return Path(os.environ[CANDLES_DIR_ENV])
    url = ledger_url or "sqlite:///.devnet/ledger.db"
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        raise ConfigError(f"no directory for candles beside ledger {url.split('@')[-1]}: "
                          f"set {CANDLES_DIR_ENV}")
    return Path(url.removeprefix("sqlite:///")).expanduser().parent / "candles"


class CandleStore:
    """Candles as Parquet, one file per interval and pair, under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, pair: str, interval: str) -> Path:
        check_interval(interval)
        if not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+", pair):
            raise ConfigError(f"pair {pair!r} is not 'BASE/QUOTE'")
        return self.root / interval / f"{pair.replace('/', '-')}.parquet"

    def write(self, candles: pl.DataFrame, interval: str) -> int:
        """Merge ``candles`` into the stored files: a stored row with the same
        ``(ts, venue, pool)`` is replaced. Returns the rows written."""
        candles = validate_candles(candles)
        for (pair,), part in candles.partition_by("pair", as_dict=True).items():
            path = self.path(str(pair), interval)
            if path.exists():
                old = pl.read_parquet(path)
                keys = part.select("ts", "venue", "pool")
                old = old.join(keys, on=["ts", "venue", "pool"], how="anti")
                part = pl.concat([old, part]).sort("pair", "venue", "pool", "ts")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            part.write_parquet(tmp)
            tmp.replace(path)
        return candles.height

    def replace_from(self, candles: pl.DataFrame, interval: str, pair: str,
                     since: datetime) -> None:
        """Drop every stored row of ``pair`` at or after ``since``, then write ``candles``
        (rebuilt from ``since``): candles of events removed by a reorg disappear too."""
        path = self.path(pair, interval)
        if path.exists():
            kept = pl.read_parquet(path).filter(pl.col("ts") < _utc(since))
            tmp = path.with_suffix(".tmp")
            kept.write_parquet(tmp)
            tmp.replace(path)
        if not candles.is_empty():
            self.write(candles, interval)

    def last_ts(self, pair: str, interval: str) -> datetime | None:
        path = self.path(pair, interval)
        if not path.exists():
            return None
        value = pl.scan_parquet(path).select(pl.col("ts").max()).collect().item()
        return value if isinstance(value, datetime) else None

    def load(
        self,
        pair: str,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        venue: str | None = None,
    ) -> pl.DataFrame:
        """Stored candles of ``pair`` with ``start <= ts < end`` (either open), optionally
        of one venue (``"all"``: the cross-venue series)."""
        path = self.path(pair, interval)
        if not path.exists():
            return empty_candles()
        scan = pl.scan_parquet(path)
        if start is not None:
            scan = scan.filter(pl.col("ts") >= _utc(start))
        if end is not None:
            scan = scan.filter(pl.col("ts") < _utc(end))
        if venue is not None:
            scan = scan.filter(pl.col("venue") == venue)
        return scan.collect().select(CANDLE_COLUMNS).sort("pair", "venue", "pool", "ts")


def load_candles(
    pair: str,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    venue: str | None = None,
    root: str | Path | None = None,
) -> pl.DataFrame:
    """Candles of ``pair`` (``CANDLE_SCHEMA``) from the store at ``root`` (default:
    ``default_candle_root()``)."""
    store = CandleStore(root if root is not None else default_candle_root())
    return store.load(pair, interval, start, end, venue=venue)


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass a timezone-aware time")
    return when.astimezone(UTC)


def window_start(when: datetime, interval: str) -> datetime:
    """The start of the ``interval`` window holding ``when`` (windows start at the epoch)."""
    check_interval(interval)
    value = pl.Series([_utc(when)]).dt.cast_time_unit("us").dt.truncate(interval).item()
    assert isinstance(value, datetime)
    return value


def refresh_candles(
    ledger: Ledger,
    pools: Sequence[PoolRef],
    store: CandleStore,
    interval: str,
    *,
    since: datetime | None = None,
) -> int:
    """Rebuild the stored candles of every pair of ``pools`` from the ledger's swap events.

    Each pair is rebuilt from the window holding ``since`` (pass ``IngestReport.changed_since``
    so a reorg's removed events leave the candles too), else from its last stored candle (the
    one that may have been incomplete), else from its first event. Returns the rows written.
    """
    by_pair: dict[str, list[PoolRef]] = {}
    for pool in pools:
        by_pair.setdefault(pool.pair, []).append(pool)
    written = 0
    for pair, group in sorted(by_pair.items()):
        last = store.last_ts(pair, interval)
        frm = min(since, last) if since is not None and last is not None else since or last
        start = window_start(frm, interval) if frm is not None else None
        candles = build_candles(trades_from_swaps(stored_swaps(ledger, group, start=start),
                                                  group), interval)
        if start is None:
            if not candles.is_empty():
                store.write(candles, interval)
        else:
            store.replace_from(candles, interval, pair, start)
        written += candles.height
    return written
