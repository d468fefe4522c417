"""The seed's error policy for chain reads and the steps before a send, in one place.

The error kinds say what to do (``dexpilot.errors``); this applies them to one call:

- ``NetworkError`` (no answer, 429, 5xx): retry on the same endpoint with backoff, honouring
  ``Retry-After`` (``EndpointPolicy``), then switch to the next endpoint;
- ``ApiError`` (an error object, garbage, a stale head) and ``WrongChainError``: switch to the
  next endpoint at once;
- ``RevertError``: the call itself reverts, on every endpoint alike: raised unchanged;
- anything else (a ``SystemFault``, a bug): raised unchanged.

When every endpoint has failed, the last error goes up: a cycle step then fails, the cycle is
recorded as failed and skipped (``dexpilot.trading.session``), and an order fails unsent. A
call first gives the endpoints before the active one their periodic probe, so failover
returns to the preferred endpoint once it answers again.

Only idempotent calls belong here (reads, simulations, fee and nonce queries, re-broadcasting
the same signed bytes): a call is repeated as a whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from dexpilot.chain.rpc import RevertError, RpcClient, WrongChainError
from dexpilot.config import redact_url
from dexpilot.errors import ApiError, NetworkError

T = TypeVar("T")
log = logging.getLogger(__name__)


def with_failover(client: RpcClient, call: Callable[[], T]) -> T:
    client.return_to_preferred()
    last: Exception | None = None
    for attempt in range(len(client.urls)):
        try:
            return with_retries(client, call)
        except RevertError:
            raise
        except (ApiError, NetworkError, WrongChainError) as exc:
            last = exc
            if attempt + 1 < len(client.urls):
                old = client.url
                new = client.switch()
                log.warning("RPC endpoint %s failed (%s); switching to %s", redact_url(old),
                            exc, redact_url(new))
                if client.on_failover is not None:
                    client.on_failover(old, new, exc)
    assert last is not None
    raise last


def with_retries(client: RpcClient, call: Callable[[], T]) -> T:
    """``call`` on the active endpoint, retrying ``NetworkError`` as the client's policy says."""
    attempt = 0
    while True:
        try:
            return call()
        except NetworkError as exc:
            wait = client.policy.wait_before_retry(attempt, exc)
            if wait is None:
                raise
            log.info("RPC %s: %s; retry %d in %.2f s", redact_url(client.url), exc, attempt + 1,
                     wait)
            time.sleep(wait)
            attempt += 1
