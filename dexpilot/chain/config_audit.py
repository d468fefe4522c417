"""Configuration checked against the chain: is every address the contract the config says?

The problem: settings validation checks shape (addresses are addresses, limits are consistent,
pools name known tokens), not the chain. A token address with no code, wrong decimals (which
scale every exposure limit of that token by a power of ten), a wrong symbol, a pool of another
pair or with token0/token1 the other way round, a pool filed under the other venue or fee tier,
a router of another factory: all of them look valid, and fail at run time or, worse, trade on
wrong numbers.

``audit_config`` asks the chain, in one JSON-RPC batch (one round trip), for the code at every
configured address (``eth_getCode``) and, through the configured multicall contract, for each
token's ``decimals()``/``symbol()``, each pool's ``token0()``/``token1()``/``factory()`` (and
``fee()`` for V3), each venue's factory ``getPair``/``getPool`` for that pool, and the factory
each router, quoter and position manager belongs to. Every mismatch comes back as a
``ConfigProblem`` naming the field path, the address and what the chain said. Nothing is
changed; what to do about a problem is the caller's: ``settings check --chain`` reports them
all, a trading runtime quarantines tokens and leaves out pools and venues
(``dexpilot.trading.pool_set``).

Disabled venues and their pools are not checked: nothing uses them. The factory's answer is
what decides whether a pool belongs to a venue; the pool's own ``factory()``/``fee()`` only make
the message precise (a fake pool can claim any factory).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector as _selector
from eth_utils import to_checksum_address

from dexpilot.chain.reader import MAX_CALLS_PER_CHUNK, decode_multicall, multicall_request
from dexpilot.chain.reverts import revert_text
from dexpilot.chain.rpc import RpcClient
from dexpilot.config import AppConfig, PoolConfig, VenueKind
from dexpilot.errors import ApiError
from dexpilot.market.pools import PoolKind

DECIMALS = _selector("decimals()")
SYMBOL = _selector("symbol()")
TOKEN0 = _selector("token0()")
TOKEN1 = _selector("token1()")
FACTORY = _selector("factory()")
FEE = _selector("fee()")
GET_PAIR = _selector("getPair(address,address)")
GET_POOL = _selector("getPool(address,address,uint24)")
ZERO_ADDRESS = "0x" + "00" * 20
_VENUE_CONTRACTS = ("factory", "router", "quoter", "position_manager")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing the config says that the chain contradicts.

    ``field`` is the path in the environment's config (``tokens[3].decimals``), ``address`` the
    contract asked, ``said`` what the chain answered, ``message`` all of it in one line. Exactly
    one of ``token`` (a symbol), ``venue`` (a name), ``pool`` (an index into ``config.pools``)
    or ``chain`` (the multicall contract) says what the problem belongs to.
    """

    field: str
    address: str
    said: str
    message: str
    token: str | None = None
    venue: str | None = None
    pool: int | None = None
    chain: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigAudit:
    """The outcome of one audit: the problems, and what it cost."""

    problems: tuple[ConfigProblem, ...]
    block_number: int | None
    addresses: int
    reads: int
    round_trips: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def chain_problems(self) -> list[ConfigProblem]:
        return [p for p in self.problems if p.chain]

    def token_problems(self) -> dict[str, list[ConfigProblem]]:
        return _grouped((p.token, p) for p in self.problems if p.token is not None)

    def venue_problems(self) -> dict[str, list[ConfigProblem]]:
        return _grouped((p.venue, p) for p in self.problems if p.venue is not None)

    def pool_problems(self) -> dict[int, list[ConfigProblem]]:
        return _grouped((p.pool, p) for p in self.problems if p.pool is not None)

    def summary(self) -> str:
        at = f" at block {self.block_number}" if self.block_number is not None else ""
        trips = "round trip" if self.round_trips == 1 else "round trips"
        return (f"{self.addresses} addresses and {self.reads} reads checked{at} in "
                f"{self.round_trips} {trips}, {self.seconds * 1000:.0f} ms")


def _grouped(items: Any) -> dict[Any, list[ConfigProblem]]:
    out: dict[Any, list[ConfigProblem]] = {}
    for key, problem in items:
        out.setdefault(key, []).append(problem)
    return out


class _Reads:
    """The multicall reads of one audit, each under a key, answered in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self._index: dict[tuple[Any, ...], int] = {}
        self.answers: list[tuple[bool, bytes]] = []

    def add(self, key: tuple[Any, ...], target: str, data: bytes) -> None:
        self._index[key] = len(self.calls)
        self.calls.append((target, data))

    def get(self, key: tuple[Any, ...]) -> tuple[bool, bytes] | None:
        i = self._index.get(key)
        return self.answers[i] if i is not None and i < len(self.answers) else None


def audit_config(config: AppConfig, client: RpcClient, *,
                 max_calls_per_chunk: int = MAX_CALLS_PER_CHUNK) -> ConfigAudit:
    """Check ``config`` against the chain ``client`` is on; the problems found, none fixed.

    Raises only what the RPC raises (``NetworkError``, ``ApiError`` when the node itself fails):
    every answer about the configured contracts, however wrong, is a ``ConfigProblem``.
    """
    started, trips = time.perf_counter(), client.round_trips
    audit = _Audit(config)
    problems, block = audit.run(client, max_calls_per_chunk)
    return ConfigAudit(tuple(problems), block, len(audit.code_targets), len(audit.reads.calls),
                       client.round_trips - trips, time.perf_counter() - started)


class _Audit:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.venues = {v.name: (j, v) for j, v in enumerate(config.venues) if v.enabled}
        self.pools = [(i, p) for i, p in enumerate(config.pools) if p.venue in self.venues]
        self.tokens = {t.symbol: t for t in config.tokens}
        self.names = {t.address: t.symbol for t in config.tokens}
        self.factory_names = {v.factory: v.name for v in config.venues if v.factory}
        # Every address that must hold code, with the field that names it.
        self.code_targets: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._code_target(config.chain.multicall, "chain.multicall", chain=True)
        for i, t in enumerate(config.tokens):
            self._code_target(t.address, f"tokens[{i}].address", token=t.symbol)
        for name, (j, v) in self.venues.items():
            for attr in _VENUE_CONTRACTS:
                address = getattr(v, attr)
                if address is not None:
                    self._code_target(address, f"venues[{j}].{attr}", venue=name)
        for i, p in self.pools:
            self._code_target(p.address, f"pools[{i}].address", pool=i)
        self.reads = _Reads()
        for t in config.tokens:
            self.reads.add(("decimals", t.symbol), t.address, DECIMALS)
            self.reads.add(("symbol", t.symbol), t.address, SYMBOL)
        for name, (_, v) in self.venues.items():
            for attr in ("router", "quoter", "position_manager"):
                address = getattr(v, attr)
                if address is not None and v.factory is not None:
                    self.reads.add(("factory", name, attr), address, FACTORY)
        for i, p in self.pools:
            self.reads.add(("token0", i), p.address, TOKEN0)
            self.reads.add(("token1", i), p.address, TOKEN1)
            self.reads.add(("pool_factory", i), p.address, FACTORY)
            if p.kind is PoolKind.V3:
                self.reads.add(("fee", i), p.address, FEE)
            factory = self.venues[p.venue][1].factory
            if factory is not None:
                self.reads.add(("lookup", i), factory, self._lookup(p))

    def _code_target(self, address: str, field: str, **owner: Any) -> None:
        self.code_targets.setdefault(address, []).append((field, owner))

    def _lookup(self, pool: PoolConfig) -> bytes:
        a, b = self.tokens[pool.token0].address, self.tokens[pool.token1].address
        if pool.kind is PoolKind.V2:
            return GET_PAIR + encode(["address", "address"], [a, b])
        return GET_POOL + encode(["address", "address", "uint24"], [a, b, pool.fee_ppm])

    # -- asking -------------------------------------------------------------------------------
    def run(self, client: RpcClient, chunk_size: int) -> tuple[list[ConfigProblem], int | None]:
        addresses = list(self.code_targets)
        code_requests: list[tuple[str, Sequence[Any]]] = [
            ("eth_getCode", [a, "latest"]) for a in addresses]
        chunks = [self.reads.calls[i:i + chunk_size]
                  for i in range(0, len(self.reads.calls), chunk_size)]
        multicall = self.config.chain.multicall
        read_requests: list[tuple[str, Sequence[Any]]] = [
            multicall_request(multicall, chunk) for chunk in chunks]
        multicall_error: str | None = None
        try:
            answers = client.batch(code_requests + read_requests)
        except ApiError as exc:
            # A multicall address that is not a multicall can make its eth_call an error
            # answer, which fails the whole batch: ask for the code alone so every other
            # problem is still reported (a second round trip, on this failure only).
            multicall_error = str(exc)
            answers = client.batch(code_requests)
        has_code = {a: _has_code(answer) for a, answer in zip(addresses, answers, strict=False)}
        problems = self._code_problems(has_code)
        block: int | None = None
        if not has_code[multicall]:
            return problems, None  # reported as chain.multicall: no code; nothing was read
        if multicall_error is None:
            try:
                blocks = set()
                for answer in answers[len(addresses):]:
                    chunk_block, results = decode_multicall(answer)
                    blocks.add(chunk_block)
                    self.reads.answers.extend(results)
                block = min(blocks) if blocks else None
            except ValueError as exc:
                multicall_error = f"answered what is not a multicall result ({exc})"
        if multicall_error is not None:
            problems.append(ConfigProblem(
                "chain.multicall", multicall, multicall_error,
                f"chain.multicall: the contract at {multicall} is not a working multicall "
                f"(UniswapInterfaceMulticall): {multicall_error}", chain=True))
            return problems, None
        problems += self._token_problems(has_code)
        problems += self._venue_problems(has_code)
        problems += self._pool_problems(has_code)
        return problems, block

    # -- judging ------------------------------------------------------------------------------
    def _code_problems(self, has_code: dict[str, bool]) -> list[ConfigProblem]:
        problems = []
        for address, fields in self.code_targets.items():
            if has_code[address]:
                continue
            for field, owner in fields:
                problems.append(ConfigProblem(
                    field, address, "no code",
                    f"{field}: no contract at {address} (eth_getCode is empty)"
                    f"{self._what(owner)}", **owner))
        return problems

    def _what(self, owner: dict[str, Any]) -> str:
        if "token" in owner:
            return f"; config says it is {owner['token']}"
        if "pool" in owner:
            p = self.config.pools[owner["pool"]]
            return f"; config says it is the {p.venue} {p.token0}/{p.token1} pool"
        return ""

    def _token_problems(self, has_code: dict[str, bool]) -> list[ConfigProblem]:
        problems = []
        for i, t in enumerate(self.config.tokens):
            if not has_code[t.address]:
                continue
            where = f"the token at {t.address}"

            def problem(attr: str, said: str, message: str, *, _i: int = i,
                        _t: Any = t) -> ConfigProblem:
                return ConfigProblem(f"tokens[{_i}].{attr}", _t.address, said,
                                     f"tokens[{_i}].{attr}: {message}", token=_t.symbol)

            decimals = _uint(self.reads.get(("decimals", t.symbol)))
            if isinstance(decimals, str):
                problems.append(problem("decimals", decimals,
                                        f"{where} does not answer decimals(): {decimals}"))
            elif decimals != t.decimals:
                problems.append(problem("decimals", str(decimals),
                                        f"config says {t.decimals}, {where} says {decimals}"))
            symbol = _symbol(self.reads.get(("symbol", t.symbol)))
            if symbol.startswith("error: "):
                problems.append(problem("symbol", symbol[7:],
                                        f"{where} does not answer symbol(): {symbol[7:]}"))
            elif symbol != t.symbol:
                problems.append(problem("symbol", symbol,
                                        f"config says {t.symbol!r}, {where} says {symbol!r}"))
        return problems

    def _venue_problems(self, has_code: dict[str, bool]) -> list[ConfigProblem]:
        problems = []
        for name, (j, v) in self.venues.items():
            if v.factory is None or not has_code[v.factory]:
                continue  # no factory to belong to; already reported if it has no code
            for attr in ("router", "quoter", "position_manager"):
                address = getattr(v, attr)
                if address is None or not has_code[address]:
                    continue
                field, where = f"venues[{j}].{attr}", f"the {attr.replace('_', ' ')} at {address}"
                said = _address(self.reads.get(("factory", name, attr)))
                if said.startswith("error: "):
                    problems.append(ConfigProblem(
                        field, address, said[7:],
                        f"{field}: {where} does not answer factory(): {said[7:]} "
                        f"(not a Uniswap {v.kind.value.removeprefix('uniswap_')} contract?)",
                        venue=name))
                elif said != v.factory:
                    problems.append(ConfigProblem(
                        field, address, f"factory {said}",
                        f"{field}: {where} belongs to factory {said}{self._venue_of(said)}, "
                        f"not to {name}'s factory {v.factory}", venue=name))
        return problems

    def _venue_of(self, factory: str) -> str:
        name = self.factory_names.get(factory)
        return f" (venue {name})" if name else ""

    def _pool_problems(self, has_code: dict[str, bool]) -> list[ConfigProblem]:
        problems = []
        for i, p in self.pools:
            if not has_code[p.address]:
                continue
            where = f"the pool at {p.address}"

            def problem(attr: str, said: str, message: str, *, _i: int = i,
                        _p: PoolConfig = p) -> ConfigProblem:
                return ConfigProblem(f"pools[{_i}].{attr}", _p.address, said,
                                     f"pools[{_i}].{attr}: {message}", pool=_i)

            t0, t1 = (_address(self.reads.get((side, i))) for side in ("token0", "token1"))
            if t0.startswith("error: ") or t1.startswith("error: "):
                said = t0[7:] if t0.startswith("error: ") else t1[7:]
                problems.append(problem("address", said,
                                        f"{where} does not answer token0()/token1(): {said} "
                                        f"(not a Uniswap pool?); config says {p.venue} "
                                        f"{p.token0}/{p.token1}"))
                continue
            want0, want1 = self.tokens[p.token0].address, self.tokens[p.token1].address
            if (t0, t1) == (want1, want0):
                problems.append(problem(
                    "token0", f"token0 {self._name(t0)}, token1 {self._name(t1)}",
                    f"config says token0 {p.token0}, token1 {p.token1}; {where} has token0 "
                    f"{self._name(t0)}, token1 {self._name(t1)}: token0 and token1 are swapped"))
                pair_ok = True  # getPair/getPool answer in either order: still worth asking
            else:
                pair_ok = True
                for side, want, got, cfg in (("token0", want0, t0, p.token0),
                                             ("token1", want1, t1, p.token1)):
                    if got != want:
                        pair_ok = False
                        problems.append(problem(
                            side, got, f"config says {cfg} ({want}), {where} has {side} "
                                       f"{self._name(got)}"))
            if not pair_ok:
                continue  # the factory would be asked about the wrong pair
            problems += self._factory_problems(i, p, problem)
        return problems

    def _factory_problems(self, i: int, p: PoolConfig, problem: Any) -> list[ConfigProblem]:
        _, venue = self.venues[p.venue]
        factory = venue.factory
        if factory is None:
            return []
        lookup = ("getPair" if p.kind is PoolKind.V2 else "getPool")
        got = _address(self.reads.get(("lookup", i)))
        if got.startswith("error: "):
            # A factory address that is not a factory usually also shows as the venue's router
            # belonging to another factory; here it is named on each pool it cannot vouch for.
            return [problem("venue", got[7:],
                            f"{p.venue}'s factory {factory} does not answer {lookup}() "
                            f"({got[7:]}): is it a Uniswap {_version(venue.kind)} factory?")]
        if got == p.address:
            return []
        pair = f"{p.token0}/{p.token1}" + (f" fee {p.fee_ppm}" if p.kind is PoolKind.V3 else "")
        answer = "no pool" if got == ZERO_ADDRESS else f"pool {got}"
        creator = _address(self.reads.get(("pool_factory", i)))
        origin = "" if creator.startswith("error: ") else (
            f"; {'the pool' if got == ZERO_ADDRESS else 'the configured one'} says it was "
            f"created by factory {creator}{self._venue_of(creator)}")
        if p.kind is PoolKind.V3:
            fee = _uint(self.reads.get(("fee", i)))
            if isinstance(fee, int) and fee != p.fee_ppm:
                return [problem("fee_ppm", str(fee),
                                f"config says {p.fee_ppm}, the pool at {p.address} has fee "
                                f"{fee} ({p.venue}'s {lookup}({pair}) returns {answer})")]
        return [problem("venue", answer,
                        f"config files the pool {p.address} under {p.venue}, but {p.venue}'s "
                        f"factory {factory} {lookup}({pair}) returns {answer}{origin}")]

    def _name(self, address: str) -> str:
        name = self.names.get(address)
        return f"{name} ({address})" if name else address


def _version(kind: VenueKind) -> str:
    return kind.value.removeprefix("uniswap_").upper()


def _has_code(answer: Any) -> bool:
    return isinstance(answer, str) and answer not in ("0x", "0x0", "")


def _uint(answer: tuple[bool, bytes] | None) -> int | str:
    """The uint in a read's answer, or a string saying why there is none."""
    if answer is None:
        return "no answer"
    ok, data = answer
    if not ok:
        return f"reverts ({revert_text(data)})"
    if len(data) < 32:
        return "returns no value" if not data else f"returns 0x{data.hex()}"
    return int.from_bytes(data[:32], "big")


def _address(answer: tuple[bool, bytes] | None) -> str:
    """The address in a read's answer (checksummed), or ``error: why``."""
    value = _uint(answer)
    if isinstance(value, str):
        return f"error: {value}"
    if value >> 160:
        return f"error: returns {value:#x}, not an address"
    return to_checksum_address(value.to_bytes(20, "big"))


def _symbol(answer: tuple[bool, bytes] | None) -> str:
    """``symbol()`` as a string (ABI ``string``, or the ``bytes32`` some old tokens return),
    or ``error: why``."""
    if answer is None:
        return "error: no answer"
    ok, data = answer
    if not ok:
        return f"error: reverts ({revert_text(data)})"
    try:
        return str(decode(["string"], data)[0])
    except Exception:  # not an ABI string: maybe bytes32 (MKR, SAI)
        pass
    if len(data) == 32:
        text = data.rstrip(b"\0")
        try:
            return text.decode()
        except UnicodeDecodeError:
            pass
    return "error: returns no value" if not data else f"error: returns 0x{data[:64].hex()}"
