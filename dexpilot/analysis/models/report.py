"""What the analysis shows: ledger rows for signals, the signal table, the market summary."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import polars as pl

from dexpilot.analysis.models.runner import AnalysisResult
from dexpilot.analysis.signal import Signal
from dexpilot.ledger import SignalRow


def signal_rows(signals: Iterable[Signal], now: datetime) -> list[SignalRow]:
    return [SignalRow(
        model=s.model, pair=s.pair, side=s.side.value, edge_bps=float(s.edge_bps),
        confidence=float(s.confidence), horizon_s=max(1, round(s.horizon_s)),
        inputs_from=s.inputs_from or now, inputs_to=s.inputs_to or now,
        payload=dict(s.details)) for s in signals]


def signals_table(result: AnalysisResult) -> list[dict[str, Any]]:
    """Signals first (largest edge first), then each silent model and its reason."""
    rows: list[dict[str, Any]] = [{
        "pair": s.pair, "model": s.model, "side": s.side.value,
        "edge_bps": round(s.edge_bps, 2), "confidence": round(s.confidence, 3),
        "horizon_s": round(s.horizon_s), "data_to": s.inputs_to.isoformat() if s.inputs_to
        else "", "note": ""}
        for s in sorted(result.signals, key=lambda s: (-s.edge_bps, s.pair, s.model))]
    rows += [{"pair": n.pair, "model": n.model, "side": "-", "edge_bps": "", "confidence": "",
              "horizon_s": "", "data_to": "", "note": n.reason}
             for n in sorted(result.silent, key=lambda n: (n.pair, n.model))]
    return rows


def market_summary(candles: pl.DataFrame) -> pl.DataFrame:
    """Per pair (cross-venue rows where present): last close, change, volatility, volume."""
    if candles.height == 0:
        return pl.DataFrame()
    has_all = candles.filter(pl.col("venue") == "all").select("pair").unique()
    frame = pl.concat([
        candles.filter(pl.col("venue") == "all"),
        candles.join(has_all, on="pair", how="anti"),
    ]).sort("pair", "ts")
    return (frame.with_columns(pl.col("close").log().diff().over("pair").alias("ret"))
            .group_by("pair", maintain_order=True)
            .agg(pl.len().alias("candles"), pl.col("ts").first().alias("from"),
                 pl.col("ts").last().alias("to"), pl.col("close").first().alias("first"),
                 pl.col("close").last().alias("last"), pl.col("ret").std().alias("vol"),
                 pl.col("volume_quote").sum().alias("volume_quote"),
                 pl.col("trades").cast(pl.Int64).sum().alias("trades"))
            .with_columns(((pl.col("last") / pl.col("first") - 1) * 10_000).alias("change_bps"),
                          (pl.col("vol") * 10_000).alias("vol_bps")))


def market_summary_markdown(candles: pl.DataFrame, result: AnalysisResult, env: str) -> str:
    summary = market_summary(candles)
    lines = [f"# Market analysis `{env}`", "",
             f"{len(result.signals)} signal(s); {len(result.silent)} model run(s) silent.", ""]
    if summary.height == 0:
        return "\n".join([*lines, "No candles to analyse."]) + "\n"
    lines += ["| pair | candles | to (UTC) | last | change (bps) | vol / candle (bps) | "
              "volume (quote) | trades | signals |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary.iter_rows(named=True):
        sigs = [s for s in result.signals if s.pair == row["pair"]]
        shown = ", ".join(f"{s.model} {s.side.value} {s.edge_bps:.0f} bps" for s in sigs) or "-"
        vol = row["vol_bps"]
        lines.append(
            f"| {row['pair']} | {row['candles']} | {row['to']:%Y-%m-%d %H:%M} | "
            f"{row['last']:.6g} | {row['change_bps']:+.1f} | "
            f"{'-' if vol is None else f'{vol:.1f}'} | {row['volume_quote']:,.0f} | "
            f"{row['trades']} | {shown} |")
    return "\n".join(lines) + "\n"
