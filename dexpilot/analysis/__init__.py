"""The analyzer: market data in, signals out."""
