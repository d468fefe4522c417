"""An aggregator HTTP API in the shape of 0x Swap API v2 (``/swap/allowance-holder/quote``).

The API returns a firm quote with a ready transaction whose on-chain bound is the answer's
``minBuyAmount`` (``buyAmount`` less the ``slippageBps`` we send). Every answer is checked
before it becomes a ``Quote``; failures keep their kinds:

- no usable answer (timeout, connection error, HTTP 5xx, 429) -> ``NetworkError``, with
  ``retry_after`` from a 429's ``Retry-After``;
- a refusal or a wrong answer (other 4xx, not JSON, missing or ill-typed fields, negative or
  zero amounts, ``buyAmount < minBuyAmount``, ``liquidityAvailable: false``, another token or
  sell amount than asked) -> ``ApiError``, so the router switches venue.

The API key travels only in the ``0x-api-key`` header; it is scrubbed from every message this
module produces (an error body that echoes it shows ``***``) and never logged.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from eth_utils import is_address, to_checksum_address

from dexpilot.errors import ApiError, NetworkError
from dexpilot.market.pools import MarketSnapshot
from dexpilot.money import Token
from dexpilot.venues.base import (
    Quote,
    SwapTx,
    UnsupportedPair,
    Venue,
    check_amount_in,
    check_swap_bounds,
)
from dexpilot.venues.uniswap_v2 import gas_limit_for

QUOTE_PATH = "/swap/allowance-holder/quote"
API_VERSION = "v2"
DEFAULT_GAS = 300_000  # when an answer omits transaction.gas (0x normally sends it)
_HEX_DATA = re.compile(r"^0x([0-9a-fA-F]{2})*$")
_UINT = re.compile(r"^[0-9]+$")


class ZeroExVenue(Venue):
    kind = "zeroex"

    def __init__(
        self,
        name: str,
        *,
        api_url: str,
        chain_id: int,
        taker: str,
        api_key: str | None = None,
        slippage_bps: int = 50,
        timeout: float = 5.0,
        http: httpx.Client | None = None,
    ) -> None:
        if not re.match(r"^https?://", api_url):
            raise ValueError(f"{name}: api_url {api_url!r} is not an http(s) URL")
        if not is_address(taker):
            raise ValueError(f"{name}: taker {taker!r} is not an address")
        if not isinstance(slippage_bps, int) or not 0 < slippage_bps < 10_000:
            raise ValueError(f"{name}: slippage_bps must be an int in (0, 10000)")
        self.name = name
        self.api_url = api_url.rstrip("/")
        self.chain_id = chain_id
        self.taker = to_checksum_address(taker)
        self.slippage_bps = slippage_bps
        self._api_key = api_key
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self.requests = 0

    def __repr__(self) -> str:  # never shows the key
        return f"ZeroExVenue({self.name!r}, api_url={self.api_url!r}, taker={self.taker})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- quoting -------------------------------------------------------------------------
    def quote_exact_in(self, token_in: Token, token_out: Token, amount_in: int,
                       snapshot: MarketSnapshot | None = None) -> Quote:
        check_amount_in(amount_in)
        params = {
            "chainId": str(self.chain_id),
            "sellToken": token_in.address,
            "buyToken": token_out.address,
            "sellAmount": str(amount_in),
            "taker": self.taker,
            "slippageBps": str(self.slippage_bps),
        }
        body = self._get(QUOTE_PATH, params)
        return self._parse_quote(body, token_in, token_out, amount_in)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = self.api_url + path
        headers = {"0x-version": API_VERSION, "Accept": "application/json"}
        if self._api_key:
            headers["0x-api-key"] = self._api_key
        self.requests += 1
        try:
            response = self._http.get(url, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise NetworkError(self._scrub(f"{self.name}: {url} timed out "
                                           f"({type(exc).__name__})")) from None
        except httpx.TransportError as exc:
            raise NetworkError(self._scrub(f"{self.name}: {url}: {type(exc).__name__}: {exc}")
                               ) from None
        status = response.status_code
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise NetworkError(f"{self.name}: rate limited (HTTP 429)"
                               + (f", retry after {retry_after:g} s" if retry_after else ""),
                               retry_after=retry_after)
        if status >= 500:
            raise NetworkError(self._scrub(f"{self.name}: HTTP {status} from {url}: "
                                           f"{_error_text(response)}"),
                               retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status in (401, 403):
            raise ApiError(f"{self.name}: the API refused our key (HTTP {status}); check the "
                           "environment variable that holds it")
        if status >= 400:
            raise ApiError(self._scrub(f"{self.name}: HTTP {status}: {_error_text(response)}"))
        if status != 200:
            raise ApiError(f"{self.name}: unexpected HTTP {status}")
        try:
            return response.json()
        except ValueError:
            raise ApiError(self._scrub(f"{self.name}: answer is not JSON: "
                                       f"{response.text[:120]!r}")) from None

    def _parse_quote(self, body: Any, token_in: Token, token_out: Token,
                     amount_in: int) -> Quote:
        name = self.name
        if not isinstance(body, dict):
            raise ApiError(f"{name}: answer is a JSON {type(body).__name__}, not an object")
        available = body.get("liquidityAvailable")
        if not isinstance(available, bool):
            raise ApiError(f"{name}: answer lacks a boolean liquidityAvailable")
        if not available:
            raise UnsupportedPair(f"{name}: no liquidity for {token_in.symbol}->"
                                  f"{token_out.symbol} at {amount_in}")
        buy = _uint(body, "buyAmount", name)
        min_buy = _uint(body, "minBuyAmount", name)
        if "sellAmount" in body and _uint(body, "sellAmount", name) != amount_in:
            raise ApiError(f"{name}: quoted a sell of {body['sellAmount']}, asked {amount_in}")
        for key, token in (("sellToken", token_in), ("buyToken", token_out)):
            if key in body and str(body[key]).lower() != token.address.lower():
                raise ApiError(f"{name}: answer's {key} {str(body[key])[:60]!r} is not "
                               f"{token.symbol} ({token.address})")
        if "chainId" in body and body["chainId"] != self.chain_id:
            raise ApiError(f"{name}: quote is for chain {body['chainId']!r}, "
                           f"not {self.chain_id}")
        if buy == 0 or min_buy == 0:
            raise ApiError(f"{name}: quote buys {buy} with minimum {min_buy}: an unbounded "
                           "or empty swap is refused")
        if buy < min_buy:
            raise ApiError(f"{name}: buyAmount {buy} is below minBuyAmount {min_buy}")
        tx = body.get("transaction")
        if not isinstance(tx, dict):
            raise ApiError(f"{name}: answer lacks a transaction object")
        to = tx.get("to")
        if not isinstance(to, str) or not is_address(to):
            raise ApiError(f"{name}: transaction.to {str(to)[:60]!r} is not an address")
        data = tx.get("data")
        if not isinstance(data, str) or not _HEX_DATA.match(data) or len(data) < 10:
            raise ApiError(f"{name}: transaction.data is not hex calldata")
        value = _uint(tx, "value", name, where="transaction.") if "value" in tx else 0
        if value != 0:
            raise ApiError(f"{name}: transaction sends {value} wei of native token to sell an "
                           "ERC-20: refused")
        gas = (_uint(tx, "gas", name, where="transaction.") if tx.get("gas") is not None
               else DEFAULT_GAS)
        spender = _spender(body, to, name)
        block = None
        if isinstance(body.get("blockNumber"), str | int) and _UINT.match(str(body["blockNumber"])):
            block = int(body["blockNumber"])
        return Quote(
            venue=name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=buy,
            gas_estimate=gas,
            path=(token_in, token_out),
            block_number=block,
            extra={
                "transaction": {"to": to_checksum_address(to), "data": data, "value": value,
                                "gas": gas},
                "min_buy_amount": min_buy,
                "spender": spender,
                "taker": self.taker,
                "zid": body.get("zid"),
                "received_at": time.time(),
            },
        )

    # -- swapping ------------------------------------------------------------------------
    def build_swap(self, quote: Quote, *, recipient: str, min_amount_out: int,
                   deadline: int) -> SwapTx:
        """The API's own transaction. Its on-chain bound is the quote's ``minBuyAmount``, so
        that must be at least ``min_amount_out``; the output always goes to the taker the
        quote was made for. 0x transactions carry no deadline of their own: the executor
        must not send one after ``deadline`` (requote instead)."""
        check_swap_bounds(self, quote, recipient=recipient, min_amount_out=min_amount_out,
                          deadline=deadline)
        tx = quote.extra.get("transaction")
        min_buy = quote.extra.get("min_buy_amount")
        if not isinstance(tx, dict) or not isinstance(min_buy, int):
            raise ValueError(f"quote from {self.name} carries no prepared transaction")
        if to_checksum_address(recipient) != quote.extra.get("taker"):
            raise ValueError(f"{self.name} sends the output to the taker {quote.extra['taker']}, "
                             f"not to {recipient}: quote with that taker instead")
        if min_buy < min_amount_out:
            raise ApiError(
                f"{self.name}: the prepared transaction only guarantees {min_buy}, less than the "
                f"required minimum {min_amount_out}; requote with slippage_bps <= the risk limit"
            )
        return SwapTx(to=tx["to"], data=tx["data"], value=int(tx["value"]),
                      gas_limit=gas_limit_for(int(tx["gas"])), spender=self.approval_spender(quote))

    def approval_spender(self, quote: Quote) -> str:
        spender = quote.extra.get("spender")
        if not isinstance(spender, str):
            raise ValueError(f"quote from {self.name} names no spender")
        return spender

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def parse_retry_after(header: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; ``None`` if absent or
    unreadable."""
    if header is None:
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _uint(obj: Mapping[str, Any], key: str, venue: str, *, where: str = "") -> int:
    if key not in obj or obj[key] is None:
        raise ApiError(f"{venue}: answer lacks {where}{key}")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(f"{venue}: {where}{key} is a {type(value).__name__}, not an integer string")
    text = str(value).strip()
    if re.match(r"^-[0-9]+$", text):
        raise ApiError(f"{venue}: {where}{key} is negative ({text[:40]})")
    if not _UINT.match(text):
        raise ApiError(f"{venue}: {where}{key} {text[:40]!r} is not a non-negative integer")
    return int(text)


def _spender(body: Mapping[str, Any], tx_to: str, venue: str) -> str:
    """Who needs the allowance: ``issues.allowance.spender`` when 0x says one is missing, else
    ``allowanceTarget``, else the transaction's target (AllowanceHolder)."""
    issues = body.get("issues")
    candidates: list[Any] = []
    if isinstance(issues, dict) and isinstance(issues.get("allowance"), dict):
        candidates.append(issues["allowance"].get("spender"))
    candidates.append(body.get("allowanceTarget"))
    for candidate in candidates:
        if candidate is None:
            continue
        if not isinstance(candidate, str) or not is_address(candidate):
            raise ApiError(f"{venue}: spender {str(candidate)[:60]!r} is not an address")
        return to_checksum_address(candidate)
    return to_checksum_address(tx_to)


def _error_text(response: httpx.Response) -> str:
    """0x errors are JSON ``{"name": ..., "message": ...}``; otherwise the first bytes."""
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:160])
    if isinstance(body, dict):
        parts = [str(body[k])[:160] for k in ("name", "message", "reason") if k in body]
        if parts:
            return ": ".join(parts)
    return repr(response.text[:160])
