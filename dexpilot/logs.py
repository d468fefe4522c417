"""The one logging setup: JSON lines on stdout, fields from ``extra=``, secrets masked.

The core logs with ``logging.getLogger(__name__)`` (loggers under ``dexpilot``); flows and
tasks use Prefect's ``get_run_logger`` and Prefect copies the core's records into its run logs
when ``PREFECT_LOGGING_EXTRA_LOGGERS=dexpilot`` is set. ``setup_logging`` adds one handler that
writes each record as one JSON object per line: time, level, logger, message, ``env`` and every
field passed with ``extra=`` (the executor passes ``order_id``, ``tx_hash``, ``venue``).

Secrets: values registered with ``register_secret`` (the hot-wallet key, read at the edge) are
replaced by ``***`` in every line this formatter writes, whatever field they hide in.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord has: everything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName"}
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
HANDLER_NAME = "dexpilot-json"


def register_secret(value: str) -> None:
    """Mask ``value`` (and its form without ``0x``) in every JSON log line from now on."""
    if not value or len(value) < 8:
        return
    with _secrets_lock:
        _secrets.add(value)
        if value.lower().startswith("0x"):
            _secrets.add(value[2:])


def mask(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    lowered = text.lower()
    for secret in secrets:
        if secret.lower() in lowered:
            start = 0
            out = []
            low_secret = secret.lower()
            while (i := lowered.find(low_secret, start)) >= 0:
                out.append(text[start:i] + "***")
                start = i + len(secret)
            out.append(text[start:])
            text = "".join(out)
            lowered = text.lower()
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become keys; secrets are masked."""

    def __init__(self, env: str | None = None) -> None:
        super().__init__()
        self.env = env

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.env is not None:
            entry["env"] = self.env
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask(json.dumps(entry, default=str))


def setup_logging(env: str | None = None, *, stream: IO[str] | None = None,
                  level: int | str = logging.INFO, logger: str = "dexpilot") -> logging.Handler:
    """Send ``logger`` (default: the core) to ``stream`` (stdout) as JSON lines. Idempotent:
    a second call replaces the handler of the first."""
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if h.get_name() == HANDLER_NAME]:
        target.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter(env))
    target.addHandler(handler)
    target.setLevel(level)
    return handler
