"""The error taxonomy: every failure dexpilot raises has a kind, and the kind says what to do.

The seed's error diagram has three branches; each maps to one class here:

- ``NetworkError``: the request did not get an answer (timeout, connection reset, HTTP 429 or
  5xx). Temporary: retry with backoff. Prefect tasks retry only these (``is_retryable``).
- ``ApiError``: an endpoint or venue answered, but wrongly or with a refusal. Switch to the
  next interface (RPC endpoint, venue) and go on.
- ``SystemFault``: something the bot cannot work around by itself (wrong chain id, ledger and
  chain disagree, database down, gas balance too low, a broken invariant). The bot goes to
  ERROR and stops trading until an operator resumes it. (Named ``SystemFault`` rather than
  ``SystemError`` so it never shadows Python's builtin of that name.)

``ConfigError`` is bad input from an operator (a malformed address, a negative limit, an
unknown environment): it is reported with the field and the reason, and nothing is changed.
"""

from __future__ import annotations


class DexpilotError(Exception):
    """Base of every error dexpilot raises on purpose."""


class NetworkError(DexpilotError):
    """No usable answer arrived: timeout, reset, 429, 5xx. Retry with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiError(DexpilotError):
    """An interface answered wrongly or refused. Switch to the next endpoint or venue."""


class SystemFault(DexpilotError):
    """The bot cannot go on safely. Move to ERROR and stop trading."""


class ConfigError(DexpilotError):
    """Operator input is invalid. Nothing was changed."""


def is_retryable(exc: BaseException) -> bool:
    """True for the errors a retry may cure (the seed's "network error -> retry")."""
    return isinstance(exc, NetworkError)
