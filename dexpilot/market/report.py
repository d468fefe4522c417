"""A market summary for people: prices per venue and cross-venue spreads, as markdown."""

from __future__ import annotations

from dexpilot.market.pools import MarketSnapshot
from dexpilot.market.spread import cross_venue_spreads


def market_report_markdown(snapshot: MarketSnapshot, env: str) -> str:
    lines = [f"# Market ({env}, block {snapshot.block_number})", "",
             "| pair | venue | fee | price |", "| --- | --- | ---: | ---: |"]
    for snap in sorted(snapshot.pools, key=lambda s: (s.pool.pair, s.pool.venue)):
        lines.append(f"| {snap.pool.pair} | {snap.pool.venue} | "
                     f"{snap.pool.fee_ppm / 10_000:.2f} % | {snap.price():,.6g} |")
    lines += ["", "## Cross-venue spreads", "",
              "| pair | buy on | sell on | gross bps | net of LP fees bps |",
              "| --- | --- | --- | ---: | ---: |"]
    for s in cross_venue_spreads(snapshot.pools):
        lines.append(f"| {s.pair} | {s.cheapest.pool.venue} | {s.dearest.pool.venue} | "
                     f"{s.gross_bps:.1f} | {s.net_of_fees_bps:.1f} |")
    return "\n".join(lines) + "\n"
