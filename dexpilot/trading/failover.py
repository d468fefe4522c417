"""The seed's "API error -> switch interface": try the next RPC endpoint, then give up.

A call that fails with an ``ApiError`` or ``NetworkError`` on one endpoint is tried once on
each of the others; when every endpoint has failed the last error goes up, where a
``NetworkError`` is retried with backoff by the Prefect task and anything else stops the bot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError, NetworkError

T = TypeVar("T")


def with_failover(client: RpcClient, call: Callable[[], T],
                  on_switch: Callable[[str, str, Exception], None] | None = None) -> T:
    last: Exception | None = None
    for attempt in range(len(client.urls)):
        try:
            return call()
        except (ApiError, NetworkError) as exc:
            last = exc
            if attempt + 1 < len(client.urls):
                old = client.url
                new = client.switch()
                if on_switch:
                    on_switch(old, new, exc)
    assert last is not None
    raise last
