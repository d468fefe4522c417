"""Metrics around flow runs: this process's registry, pushed to the Pushgateway (if the
environment names one) under ``{job, environment}``; a failed push is logged, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dexpilot.config import AppConfig, redact_url
from dexpilot.metrics import DEFAULT_JOB, Metrics, process_metrics

log = logging.getLogger("dexpilot.metrics")
_served: dict[int, Any] = {}


def push_metrics(config: AppConfig, job: str = DEFAULT_JOB,
                 metrics: Metrics | None = None) -> bool:
    url = config.metrics.pushgateway_url
    if url is None:
        return False
    try:
        (metrics or process_metrics()).push(url, config.env, job)
    except Exception as exc:  # monitoring never stops trading
        log.warning("metrics push to %s failed: %s", redact_url(url), type(exc).__name__)
        return False
    return True


def serve_metrics(config: AppConfig, metrics: Metrics | None = None) -> int | None:
    """Serve ``/metrics`` on ``metrics.listen_port`` once per process; returns the port."""
    port = config.metrics.listen_port
    if port is None:
        return None
    if port not in _served:
        try:
            _served[port] = (metrics or process_metrics()).serve(port)
        except OSError as exc:  # port taken: the session trades on, unscraped
            log.warning("cannot serve /metrics on port %s: %s", port, exc)
            return None
    return port


@contextmanager
def pushed_metrics(config: AppConfig, job: str = DEFAULT_JOB) -> Iterator[Metrics]:
    """This process's metrics for a flow run, pushed when the run ends (also on failure)."""
    try:
        yield process_metrics()
    finally:
        push_metrics(config, job)
