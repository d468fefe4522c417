"""Venues: one interface, many DEXes."""
