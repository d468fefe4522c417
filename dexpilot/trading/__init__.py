"""The trading cycle: market data -> signals -> orders -> route -> risk -> execution -> record."""
