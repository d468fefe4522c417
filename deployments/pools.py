"""Create dexpilot's work pools through the Prefect Python client (idempotent).

    .venv/bin/python -m deployments.pools

The CLI's ``prefect work-pool create`` asks a remote catalog for the worker types; the client
does not, so this works offline. An existing pool is left as it is.
"""

from __future__ import annotations

import sys

POOLS: dict[str, str] = {
    "dexpilot-test": "test: CI, the promotion flow and its gate 1",
    "dexpilot-staging": "staging: the promotion's paper-trading session (gate 2)",
    "dexpilot-prod": "prod: the live bot",
}
POOL_TYPE = "process"


def ensure_pools(pools: dict[str, str] | None = None) -> list[str]:
    """Create each missing pool; return the names of those created now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()

    created: list[str] = []
    with get_client(sync_client=True) as client:
        for name, description in (pools or POOLS).items():
            try:
                client.read_work_pool(name)
                continue
            except ObjectNotFound:
                pass
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type=POOL_TYPE, description=description,
                    base_job_template=template))
                created.append(name)
            except ObjectAlreadyExists:  # created meanwhile by another caller
                pass
    return created


def main() -> int:
    created = ensure_pools()
    for name in POOLS:
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
