"""Strategies: signals in, order intents out."""
