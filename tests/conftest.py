"""Shared fixtures live in tests/fixtures/, one module per real part they start."""

import os

# Prefect must stay offline and quiet in every test process, set before prefect is imported.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures.chain",
    "tests.fixtures.postgres",
    "tests.fixtures.prefect",
    "tests.fixtures.zeroex",
    "tests.fixtures.monitoring",
    "tests.fixtures.ops",
    "tests.fixtures.analysis",
    "tests.fixtures.hostile",
]
