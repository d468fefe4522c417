"""Candles a user brings: Parquet or CSV files in the candle schema, read with polars.

Only ``ts``, ``pair`` and ``close`` are required; ``venue`` defaults to ``"all"``, ``pool`` to
``""``, the other prices to the close and volumes to 0. ``ts`` may be a datetime (naive values
are taken as UTC), an ISO string or epoch seconds.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dexpilot.market.candles import CANDLE_SCHEMA


def read_candles(path: str | Path) -> pl.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no candle file at {file}")
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(file)
    elif suffix == ".csv":
        frame = pl.read_csv(file, try_parse_dates=True)
    else:
        raise ValueError(f"{file.name}: candles must be a .parquet or .csv file")
    return normalise_candles(frame, str(file))


def normalise_candles(frame: pl.DataFrame, where: str = "candles") -> pl.DataFrame:
    missing = [c for c in ("ts", "pair", "close") if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
    ts = frame.get_column("ts")
    if ts.dtype == pl.String:
        ts = ts.str.to_datetime(time_zone="UTC")
    elif ts.dtype.is_integer() or ts.dtype.is_float():
        ts = pl.from_epoch(ts.cast(pl.Int64), time_unit="s")
    if not isinstance(ts.dtype, pl.Datetime):
        raise ValueError(f"{where}: ts must be a datetime, ISO string or epoch seconds")
    ts = ts.dt.replace_time_zone("UTC") if ts.dtype.time_zone is None else \
        ts.dt.convert_time_zone("UTC")
    frame = frame.with_columns(ts.dt.cast_time_unit("us").alias("ts"))
    defaults: dict[str, pl.Expr] = {
        "venue": pl.lit("all"), "pool": pl.lit(""), "open": pl.col("close"),
        "high": pl.col("close"), "low": pl.col("close"), "volume_base": pl.lit(0.0),
        "volume_quote": pl.lit(0.0), "trades": pl.lit(0),
    }
    frame = frame.with_columns([expr.alias(name) for name, expr in defaults.items()
                                if name not in frame.columns])
    return frame.select([pl.col(name).cast(dtype) for name, dtype in CANDLE_SCHEMA.items()])
