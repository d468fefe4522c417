"""The one logging setup: JSON lines on stdout, fields from ``extra=``, secrets masked.

The core logs with ``logging.getLogger(__name__)`` (loggers under ``dexpilot``). Every entry
point installs this setup: the ``dexpilot`` CLI (on stderr, its stdout is the commands'
output) and every flow run (``tasks.run_logging``, an ``on_running`` hook of each flow, which
also sends the core's records to Prefect's stored logs of the run). ``setup_logging`` adds one
handler that writes each record as one JSON object per line: time, level, logger, message,
``env`` and every field passed with ``extra=`` (the executor passes ``order_id``, ``tx_hash``,
``venue``).

Secrets: values registered with ``register_secret`` (the hot-wallet key, read at the edge) are
replaced by ``***`` in every line this formatter writes, whatever field they hide in. Other
handlers (Prefect's API and console handlers) format records their own way, so
``setup_logging`` also puts ``MaskSecrets`` on every handler of the ``dexpilot`` and root
loggers: it masks the record itself (message, ``extra=`` fields, traceback) before any of them
sees it.

``DEXPILOT_LOG_FILE`` (set by ``make run``) sends the JSON lines to that file instead of a
terminal stream, so an interactive command shows its own output, not the log.
"""

from __future__ import annotations

import json
import logging
import os
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


class MaskSecrets(logging.Filter):
    """Masks registered secrets in the record itself, for every handler that sees it after."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _secrets_lock:
            if not _secrets:
                return True
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, str):
                setattr(record, key, mask(value))
        if record.exc_info and not record.exc_text:
            # Formatters reuse ``exc_text`` once set: the traceback is formatted once, masked.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


_mask_filter = MaskSecrets()


def mask_handlers(*logger_names: str) -> None:
    """Put ``MaskSecrets`` on every handler of these loggers (``""``: the root). Idempotent."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, MaskSecrets) for f in handler.filters):
                handler.addFilter(_mask_filter)


class _StdStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stdout``/``sys.stderr`` as they are at each record, not at set-up: a
    captured or replaced stream (a CLI test runner, a worker's pipe) is followed, and a closed
    one is never written to."""

    def __init__(self, name: str) -> None:
        if name not in ("stdout", "stderr"):
            raise ValueError(f"stream must be a stream, 'stdout' or 'stderr', got {name!r}")
        super().__init__()
        self.sys_stream = name

    @property
    def stream(self) -> IO[str]:
        stream: IO[str] = getattr(sys, self.sys_stream)
        return stream

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # always the current sys stream


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


def setup_logging(env: str | None = None, *, stream: IO[str] | str | None = None,
                  level: int | str = logging.INFO, logger: str = "dexpilot") -> logging.Handler:
    """Send ``logger`` (default: the core) as JSON lines to ``stream``: a stream, or
    ``"stdout"``/``"stderr"`` (the current one at each record); ``None``: where an earlier
    call sent it (the CLI chose stderr before a flow run set up), else stdout. Idempotent: a
    second call replaces the handler of the first. Then masks secrets for every handler of
    ``logger`` and the root (``mask_handlers``)."""
    target = logging.getLogger(logger)
    previous = [h for h in target.handlers if h.get_name() == HANDLER_NAME]
    for old in previous:
        target.removeHandler(old)
    log_file = os.environ.get("DEXPILOT_LOG_FILE")
    if log_file and (stream is None or isinstance(stream, str)):
        for old in previous:
            old.close()
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        return _install(target, file_handler, env, level, logger)
    if stream is None:
        kept = previous[-1] if previous else None
        stream = kept.sys_stream if isinstance(kept, _StdStream) else (
            kept.stream if isinstance(kept, logging.StreamHandler) else "stdout")
    handler: logging.StreamHandler = (  # type: ignore[type-arg]
        _StdStream(stream) if isinstance(stream, str) else logging.StreamHandler(stream))
    return _install(target, handler, env, level, logger)


def _install(target: logging.Logger, handler: logging.Handler, env: str | None,
             level: int | str, logger: str) -> logging.Handler:
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter(env))
    target.addHandler(handler)
    target.setLevel(level)
    mask_handlers(logger, "")
    return handler
