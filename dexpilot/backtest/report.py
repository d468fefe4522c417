"""Backtest metrics and their presentation: PnL, Sharpe, drawdown, win rate, exposure.

PnL is the change of wallet A's equity (every token at the candle close, gas token included)
from the first traded candle to the last, in whole quote tokens. The win rate is over closing
trades: each pair's position away from the baseline inventory is tracked at average cost, and
a trade that reduces it realises (exit - entry) x size; a win is a positive realisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dexpilot.backtest.engine import BacktestResult, Trade
from dexpilot.money import format_units

SECONDS_PER_YEAR = 365 * 86_400


@dataclass(frozen=True, slots=True)
class BacktestReport:
    pnl_quote: float
    return_pct: float
    sharpe: float
    max_drawdown_pct: float
    win_rate: float | None  # None: no closing trade
    trade_count: int
    reverted: int
    closing_trades: int
    gas_quote: float
    fees_quote: float
    max_exposure_quote: float
    mean_exposure_quote: float
    signals: int
    rejections: dict[str, int]
    candles: int
    quote: str

    def rows(self) -> list[tuple[str, str]]:
        q = self.quote
        win = f"{self.win_rate:.1%}" if self.win_rate is not None else "n/a"
        return [
            ("PnL", f"{self.pnl_quote:,.2f} {q} ({self.return_pct:+.3f} %)"),
            ("Sharpe (annualised)", f"{self.sharpe:.3f}"),
            ("max drawdown", f"{self.max_drawdown_pct:.3f} %"),
            ("win rate", f"{win} of {self.closing_trades} closing trades"),
            ("trades", f"{self.trade_count} ({self.reverted} reverted)"),
            ("LP fees paid", f"{self.fees_quote:,.2f} {q}"),
            ("gas paid", f"{self.gas_quote:,.2f} {q}"),
            ("exposure max / mean", f"{self.max_exposure_quote:,.2f} / "
                                    f"{self.mean_exposure_quote:,.2f} {q}"),
            ("signals", str(self.signals)),
            ("risk rejections", ", ".join(f"{k}: {v}" for k, v in
                                          sorted(self.rejections.items())) or "none"),
            ("candles replayed", str(self.candles)),
        ]


def _whole(raw: int | float, decimals: int) -> float:
    return float(raw) / 10.0**decimals


def realised_pnl(result: BacktestResult) -> list[tuple[Trade, float | None]]:
    """Each trade with what it realised in whole quote (``None``: it opened or added)."""
    position: dict[str, float] = {}  # whole base away from the baseline, signed
    entry: dict[str, float] = {}  # average entry price, whole quote per whole base
    out: list[tuple[Trade, float | None]] = []
    qd = result.quote.decimals
    for trade in result.trades:
        if trade.status != "filled":
            out.append((trade, None))
            continue
        base = trade.pair.partition("/")[0]
        bd = result.tokens[base].decimals
        if trade.side == "buy":
            size, value = _whole(trade.amount_out, bd), _whole(trade.amount_in, qd)
            signed = size
        else:
            size, value = _whole(trade.amount_in, bd), _whole(trade.amount_out, qd)
            signed = -size
        price = value / size if size else 0.0
        held, avg = position.get(base, 0.0), entry.get(base, 0.0)
        realised: float | None = None
        if held == 0 or (held > 0) == (signed > 0):
            total = held + signed
            entry[base] = (abs(held) * avg + size * price) / abs(total) if total else 0.0
            position[base] = total
        else:
            closed = min(abs(held), size)
            direction = 1.0 if held > 0 else -1.0
            realised = (price - avg) * closed * direction
            rest = size - closed
            position[base] = held + signed
            if rest > 0:
                entry[base] = price
            elif abs(position[base]) < 1e-15:
                position[base] = 0.0
        out.append((trade, realised))
    return out


def summarise(result: BacktestResult) -> BacktestReport:
    qd = result.quote.decimals
    equity = np.asarray([result.start_equity_quote, *result.equity_quote],
                        dtype=np.float64) / 10**qd
    start = result.start_equity_quote / 10.0**qd
    pnl = pnl_raw(result) / 10**qd
    returns = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.zeros(0)
    sharpe = 0.0
    if len(returns) > 1 and float(returns.std(ddof=1)) > 0 and result.interval_s > 0:
        per_year = SECONDS_PER_YEAR / result.interval_s
        sharpe = float(returns.mean() / returns.std(ddof=1) * math.sqrt(per_year))
    drawdown = 0.0
    if len(equity):
        peaks = np.maximum.accumulate(equity)
        drawdown = float(((peaks - equity) / peaks).max()) * 100
    realised = [r for _, r in realised_pnl(result) if r is not None]
    fees = 0.0
    for trade in result.trades:
        if trade.status == "filled":
            token = result.tokens[trade.token_in]
            price = result.final_prices.get(trade.token_in, 1.0) if trade.token_in != \
                result.quote.symbol else 1.0
            fees += _whole(trade.amount_in, token.decimals) * price * result.config.fee_ppm / 1e6
    exposure = np.asarray(result.exposure_quote, dtype=np.float64) / 10**qd
    return BacktestReport(
        pnl_quote=pnl, return_pct=pnl / start * 100 if start else 0.0, sharpe=sharpe,
        max_drawdown_pct=drawdown,
        win_rate=(sum(1 for r in realised if r > 0) / len(realised)) if realised else None,
        trade_count=len(result.trades),
        reverted=sum(1 for t in result.trades if t.status != "filled"),
        closing_trades=len(realised),
        gas_quote=sum(t.gas_quote for t in result.trades) / 10**qd, fees_quote=fees,
        max_exposure_quote=float(exposure.max()) if len(exposure) else 0.0,
        mean_exposure_quote=float(exposure.mean()) if len(exposure) else 0.0,
        signals=result.signals, rejections=dict(result.rejections), candles=result.candles,
        quote=result.quote.symbol,
    )


def pnl_raw(result: BacktestResult) -> int:
    """Equity after the last candle less equity before the first trade, raw quote units."""
    return (result.equity_quote[-1] - result.start_equity_quote) if result.equity_quote else 0


def trades_table(result: BacktestResult, limit: int | None = None) -> list[dict[str, Any]]:
    """The trade list as rows for a table artifact or the terminal (amounts in whole units)."""
    rows = []
    for trade, realised in realised_pnl(result)[:limit]:
        t_in, t_out = result.tokens[trade.token_in], result.tokens[trade.token_out]
        rows.append({
            "time": trade.ts.strftime("%Y-%m-%d %H:%M"), "pair": trade.pair,
            "side": trade.side, "model": trade.model,
            "in": f"{format_units(trade.amount_in, t_in.decimals)} {t_in.symbol}",
            "out": f"{format_units(trade.amount_out, t_out.decimals)} {t_out.symbol}",
            "status": trade.status,
            "realised": "" if realised is None else f"{realised:,.2f}",
        })
    return rows


def exposure_table(result: BacktestResult, points: int = 50) -> list[dict[str, Any]]:
    """Equity and exposure over time, down-sampled to about ``points`` rows."""
    n = len(result.ts)
    if n == 0:
        return []
    step = max(1, n // points)
    qd = result.quote.decimals
    idx = list(range(0, n, step))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [{"time": result.ts[i].strftime("%Y-%m-%d %H:%M"),
             "equity": round(result.equity_quote[i] / 10**qd, 2),
             "exposure": round(result.exposure_quote[i] / 10**qd, 2)} for i in idx]


def report_markdown(result: BacktestResult, report: BacktestReport, title: str) -> str:
    lines = [f"# {title}", "",
             f"{len(result.pairs)} pair(s): {', '.join(result.pairs)}; "
             f"{report.candles} candles; from {result.ts[0]:%Y-%m-%d %H:%M} to "
             f"{result.ts[-1]:%Y-%m-%d %H:%M} UTC." if result.ts else "no candles", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.rows()]
    return "\n".join(lines) + "\n"
