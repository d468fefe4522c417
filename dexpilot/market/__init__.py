"""Market state: pools, snapshots, candles, price feeds."""
