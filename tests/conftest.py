"""Shared fixtures live in tests/fixtures/, one module per real part they start."""

import os

import pytest

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

# A test that starts a real part carries that part's mark, so `-m "not chain and not postgres
# and not prefect and not monitoring"` (the quick selection, the promotion's first gate) stays
# quick. The mark follows from the fixtures a test uses, directly or through other fixtures, so
# it cannot be forgotten: a hand-written mark for a part the test does not start is harmless.
REQUIRED_MARKS = {
    "devnet": "chain",                # anvil with the dev market
    "postgres_server": "postgres",    # a PostgreSQL cluster
    "prefect_server": "prefect",      # a Prefect server
    "ops_server": "prefect",          # a Prefect server behind nginx
    "monitoring_stack": "monitoring",  # Prometheus, Alertmanager, Pushgateway
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, mark in REQUIRED_MARKS.items():
            if fixture in fixtures and item.get_closest_marker(mark) is None:
                item.add_marker(mark)
