"""Prometheus, Pushgateway and Alertmanager on loopback, for the tests and `dexpilot demo
--monitoring`: the Debian binaries, free ports, a temporary data directory each, fast
intervals (1 s scrape and evaluation, ``group_wait: 0s``), the repository's alert rules.

The generated configs differ from ``prometheus.yml`` / ``alertmanager.yml`` only in ports,
intervals and the webhook URL; the rules file is the same one production loads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dexpilot.chain.anvil import free_port

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules" / "dexpilot.rules.yml"
PROMETHEUS = "prometheus"
PUSHGATEWAY = "prometheus-pushgateway"
ALERTMANAGER = "prometheus-alertmanager"
READY_TIMEOUT_S = 30.0


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                   else None)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (Debian package {name}; `make test` "
                                "installs it)")
    return found


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path,
                     timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)  # poll interval, not synchronisation: the deadline decides
    raise TimeoutError(f"{url} not ready within {timeout} s: "
                       f"{log.read_text(errors='replace')[-2000:]}")


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(name: str, args: Sequence[str], url: str, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([_binary(name), *args], stdout=out,
                                   stderr=subprocess.STDOUT, cwd=workdir,
                                   start_new_session=True)
    server = Server(name, url, process, log)
    try:
        wait_until_ready(url, process, log)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class MonitoringStack:
    """The running servers; ``stop()`` ends them and removes their data (if it owns it)."""

    workdir: Path
    pushgateway: Server
    prometheus: Server
    alertmanager: Server | None = None
    owns_workdir: bool = False
    servers: list[Server] = field(default_factory=list)

    @property
    def pushgateway_url(self) -> str:
        return self.pushgateway.url

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def alertmanager_url(self) -> str | None:
        return self.alertmanager.url if self.alertmanager else None

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers the tests use ------------------------------------------------------------
    def wipe_pushgateway(self) -> None:
        http_json("PUT", f"{self.pushgateway_url}/api/v1/admin/wipe")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; raise with Prometheus's message if it is invalid."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = http_json("GET", url)
        except urllib.error.HTTPError as exc:
            raise ValueError(f"{expr!r}: {exc.read().decode(errors='replace')}") from exc
        if answer.get("status") != "success":
            raise ValueError(f"{expr!r}: {answer}")
        result = answer["data"]["result"]
        return result if isinstance(result, list) else [result]

    def alerts(self) -> list[dict[str, Any]]:
        return list(http_json("GET", f"{self.prometheus_url}/api/v1/alerts")["data"]["alerts"])


def prometheus_config(pushgateway: str, alertmanager: str | None, *, interval: str = "1s",
                      rules: Path = RULES, extra_targets: Sequence[str] = ()) -> str:
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "rule_files:",
        f"  - {json.dumps(str(rules))}",
        "scrape_configs:",
        "  - job_name: pushgateway",
        "    honor_labels: true",
        "    static_configs:",
        f"      - targets: [{json.dumps(pushgateway)}]",
    ]
    if extra_targets:
        lines += ["  - job_name: dexpilot-session", "    static_configs:",
                  f"      - targets: {json.dumps(list(extra_targets))}",
                  "        labels: {environment: dev}"]
    if alertmanager:
        lines += ["alerting:", "  alertmanagers:", "    - static_configs:",
                  f"        - targets: [{json.dumps(alertmanager)}]"]
    return "\n".join(lines) + "\n"


def alertmanager_config(webhook_url: str) -> str:
    return "\n".join([
        "route:",
        "  receiver: webhook",
        "  group_by: [alertname, environment]",
        "  group_wait: 0s",
        "  group_interval: 1s",
        "  repeat_interval: 1h",
        "receivers:",
        "  - name: webhook",
        "    webhook_configs:",
        f"      - url: {json.dumps(webhook_url)}",
        "        send_resolved: true",
    ]) + "\n"


def start_stack(workdir: Path | None = None, *, webhook_url: str | None = None,
                interval: str = "1s", extra_targets: Sequence[str] = ()) -> MonitoringStack:
    """Pushgateway + Prometheus (+ Alertmanager when ``webhook_url`` is given) on 127.0.0.1."""
    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="dexpilot-monitoring-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    started: list[Server] = []
    try:
        port = free_port()
        pushgateway = _start(PUSHGATEWAY, [f"--web.listen-address=127.0.0.1:{port}",
                                           "--web.enable-admin-api"],
                             f"http://127.0.0.1:{port}", root)
        started.append(pushgateway)
        alertmanager = None
        if webhook_url is not None:
            port = free_port()
            data = root / "alertmanager-data"
            data.mkdir(exist_ok=True)
            config = root / "alertmanager.yml"
            config.write_text(alertmanager_config(webhook_url))
            alertmanager = _start(ALERTMANAGER, [
                f"--config.file={config}", f"--storage.path={data}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            ], f"http://127.0.0.1:{port}", root)
            started.append(alertmanager)
        port = free_port()
        data = root / "prometheus-data"
        data.mkdir(exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(prometheus_config(
            pushgateway.url.removeprefix("http://"),
            alertmanager.url.removeprefix("http://") if alertmanager else None,
            interval=interval, extra_targets=extra_targets))
        prometheus = _start(PROMETHEUS, [
            f"--config.file={config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ], f"http://127.0.0.1:{port}", root)
        started.append(prometheus)
    except BaseException:
        for server in reversed(started):
            server.stop()
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return MonitoringStack(root, pushgateway, prometheus, alertmanager, owns, started)


def check_commands(root: Path = HERE) -> list[list[str]]:
    """The three checks CI runs on this directory (the test runs them)."""
    return [
        [_binary("promtool"), "check", "config", str(root / "prometheus.yml")],
        [_binary("promtool"), "test", "rules",
         *sorted(str(p) for p in (root / "tests").glob("*.yml"))],
        [_binary("amtool"), "check-config", str(root / "alertmanager.yml")],
    ]
