"""prefect.yaml on a fresh `prefect server start`: pools, deployments, schedules, pull steps."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dexpilot.chain.anvil import PROJECT_ROOT
from tests.fixtures.ops import OpsServer

POOLS = {"test": "dexpilot-test", "staging": "dexpilot-staging", "prod": "dexpilot-prod"}
# flow -> {deployment name: (env parameter, schedule kind or None, active)}
EXPECTED: dict[str, dict[str, tuple[str | None, str | None, bool]]] = {
    "trading-session": {"test": ("test", None, False), "staging": ("test", None, False),
                        "prod": ("prod", "cron", True)},
    "profit-sweep": {"test": ("test", "interval", False), "staging": ("test", "interval", False),
                     "prod": ("prod", "interval", True)},
    "backup": {"test": ("test", "cron", False), "staging": ("test", "cron", False),
               "prod": ("prod", "cron", True)},
    "control": {"test": ("test", None, False), "staging": ("test", None, False),
                "prod": ("prod", None, False)},
    "trading-cycle": {"test": ("test", None, False)},
    "market-snapshot": {"test": ("test", None, False)},
    "promote": {"ci": (None, None, False)},
}
ANALYSIS_DEPLOYED = (PROJECT_ROOT / "flows" / "analysis.py").exists() and "flows/analysis.py" in [
    line.split("entrypoint:")[1].split(":")[0].strip()
    for line in (PROJECT_ROOT / "prefect.yaml").read_text().splitlines()
    if line.strip().startswith("entrypoint:")]
if ANALYSIS_DEPLOYED:
    EXPECTED["analysis"] = {"test": ("test", "interval", False),
                            "staging": ("test", "interval", False),
                            "prod": ("prod", "interval", True)}


def _pool_of(deployment_name: str) -> str:
    return POOLS["test" if deployment_name == "ci" else deployment_name]


def test_pools_helper_is_idempotent(deployed: OpsServer) -> None:
    again = subprocess.run([sys.executable, "-m", "deployments.pools"], cwd=PROJECT_ROOT,
                           env=deployed.env(), capture_output=True, text=True, timeout=120,
                           check=True)
    assert again.stdout.split() == [
        "dexpilot-test:", "exists", "dexpilot-staging:", "exists", "dexpilot-prod:", "exists"]
    for pool in POOLS.values():
        info = deployed.api("GET", f"/work_pools/{pool}")
        assert info["type"] == "process"
        assert info["base_job_template"]["job_configuration"]  # a usable process template


def test_deploy_all_creates_every_deployment_with_its_pool_and_schedules(
        deployed: OpsServer) -> None:
    found = deployed.api("POST", "/deployments/filter", json={"limit": 200})
    flows = {f["id"]: f["name"] for f in deployed.api("POST", "/flows/filter", json={})}
    actual = {(flows[d["flow_id"]], d["name"]): d for d in found}
    expected_keys = {(flow, name) for flow, names in EXPECTED.items() for name in names}
    assert expected_keys <= set(actual), sorted(expected_keys - set(actual))
    for flow, names in EXPECTED.items():
        for name, (env, kind, active) in names.items():
            d = actual[(flow, name)]
            where = f"{flow}/{name}"
            assert d["work_pool_name"] == _pool_of(name), where
            assert d["parameters"].get("env") == env, where
            schedules = d["schedules"]
            if kind is None:
                assert schedules == [], where
                continue
            assert len(schedules) == 1, where
            assert kind in schedules[0]["schedule"], where
            assert schedules[0]["active"] is active, where
            # outside prod nothing runs by itself
            assert active == (name == "prod"), where
            assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
                "directory": str(PROJECT_ROOT)}}], where
    assert actual[("backup", "prod")]["schedules"][0]["schedule"]["cron"] == "30 2 * * *"
    limit = actual[("promote", "ci")].get("global_concurrency_limit") or {}
    assert limit.get("limit") == 1, actual[("promote", "ci")]


@pytest.mark.parametrize("flow", ["trading-session", "profit-sweep", "backup"])
def test_no_schedule_runs_outside_prod(deployed: OpsServer, flow: str) -> None:
    runs = deployed.api("POST", "/flow_runs/filter", json={
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200})
    deployments = {d["id"]: d["name"] for d in deployed.api("POST", "/deployments/filter",
                                                             json={"limit": 200})}
    envs = {deployments.get(r["deployment_id"]) for r in runs if r["deployment_id"]}
    assert envs <= {"prod"}, envs
