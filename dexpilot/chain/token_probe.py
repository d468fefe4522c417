"""Simulate buying, transferring and selling a token from wallet A, in one round trip.

A hostile token looks like any other ERC20 until wallet A holds it: a honeypot refuses the
sell, a fee-on-transfer token delivers less than the pool maths promised, a freezable token
has frozen wallet A, a max-transaction limit traps a position too big to exit. The only way to
know is to try, without sending anything: ``eth_simulateV1`` on the latest state with the
probe contract (``contracts/TokenProbe.sol``) put at wallet A's own address by a state
override, so every token call comes from wallet A exactly as the real trade will. One
simulation per token, all tokens of a cycle in one JSON-RPC batch.

This module only runs the simulation and decodes what it measured (``ProbeReport``); what
makes a token bad is decided in one place, ``dexpilot.risk.token_safety.judge``.

The probe has code while it runs, so a token that treats contracts differently from
externally owned accounts may refuse the probe and be judged unsafe: the safe direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from dexpilot.chain.artifacts import Artifact, load_artifact
from dexpilot.chain.reverts import revert_text
from dexpilot.chain.rpc import RpcClient
from dexpilot.errors import ApiError
from dexpilot.market.pools import PoolKind
from dexpilot.money import Token

# Receives the control buy and the test transfer: an address nobody holds a key for, so no
# token has a reason to treat it specially (unlike 0x…dEaD, which some tokens exempt).
OTHER_ADDRESS = to_checksum_address(keccak(text="dexpilot token probe: other address")[-20:])
PROBE_GAS = 30_000_000
ZERO = "0x0000000000000000000000000000000000000000"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
KINDS = {PoolKind.V2: 2, PoolKind.V3: 3}


@dataclass(frozen=True, slots=True)
class ProbeRoute:
    """How wallet A buys the token: ``path[0]`` pays, ``path[-1]`` is the token under test.
    ``fees_ppm`` has one fee tier per hop (V3); ``pool`` is the last hop's pool."""

    kind: PoolKind
    router: str
    pool: str
    path: tuple[Token, ...]
    fees_ppm: tuple[int, ...] = ()
    quoter: str | None = None

    def __post_init__(self) -> None:
        if len(self.path) < 2:
            raise ValueError("a probe route needs at least two tokens")
        if self.kind is PoolKind.V3 and (len(self.fees_ppm) != len(self.path) - 1
                                        or self.quoter is None):
            raise ValueError("a V3 probe route needs one fee per hop and the quoter")

    @property
    def token(self) -> Token:
        return self.path[-1]


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """Probe ``route.token`` with a small buy of ``small_in`` and a full-size one of ``big_in``
    (raw units of ``route.path[0]``; wallet A must hold ``2 * small_in + big_in``)."""

    route: ProbeRoute
    small_in: int
    big_in: int


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What the simulation measured; amounts are raw units of the token under test unless
    named otherwise. ``*_error`` is the step's revert reason (``None``: it did not revert)."""

    request: ProbeRequest
    block_number: int
    quoted: int
    buy_ok: bool
    buy_error: str | None
    received: int
    pool_sent: int
    control_ok: bool
    control_error: str | None
    transfer_ok: bool
    transfer_returned_false: bool
    transfer_error: str | None
    transfer_sent: int
    transfer_arrived: int
    transfer_debited: int
    sell_ok: bool
    sell_error: str | None
    sell_sent: int
    sell_arrived: int
    sell_out: int
    big_buy_ok: bool
    big_buy_error: str | None
    big_received: int
    big_sell_ok: bool
    big_sell_error: str | None
    wallet_delta: int  # by balanceOf, start to end
    other_delta: int
    wallet_delta_by_events: int  # by the token's Transfer events
    other_delta_by_events: int
    zero_transfer_error: str | None = None  # when the buy failed: a transfer of 0 reverts so
    input_transfer_error: str | None = None  # ... and wallet A cannot send path[0] either


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """The probe could not run (not a verdict on the token: it is simulated again later)."""

    request: ProbeRequest
    reason: str


@cache
def _probe() -> tuple[Artifact, str]:
    artifact = load_artifact("TokenProbe")
    entry = next(e for e in artifact.abi if e.get("name") == "probe")
    (output,) = entry["outputs"]
    return artifact, _abi_type(output)


def _abi_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple'):]}"
    return kind


def probe_calldata(client: RpcClient, request: ProbeRequest) -> str:
    artifact, _ = _probe()
    route = request.route
    contract = client.w3.eth.contract(abi=artifact.abi)
    data: str = contract.encode_abi("probe", [
        (KINDS[route.kind], to_checksum_address(route.router),
         to_checksum_address(route.quoter or ZERO), to_checksum_address(route.pool),
         [to_checksum_address(t.address) for t in route.path], list(route.fees_ppm)),
        request.small_in, request.big_in, OTHER_ADDRESS,
    ])
    return data


def run_probes(client: RpcClient, wallet: str, requests: Sequence[ProbeRequest],
               block_number: int) -> list[ProbeReport | ProbeFailure]:
    """Simulate every request on the state after ``block_number``, in one JSON-RPC batch.

    A node that cannot simulate at all raises (``ApiError``/``NetworkError``: the caller
    refuses the buys, it never assumes a token is safe); a probe that reverts as a whole (e.g.
    wallet A lacks the amount to probe with) is a ``ProbeFailure``.
    """
    if not requests:
        return []
    artifact, _ = _probe()
    wallet = to_checksum_address(wallet)
    batch = []
    for request in requests:
        call = {"from": wallet, "to": wallet, "data": probe_calldata(client, request),
                "gas": hex(PROBE_GAS)}
        batch.append(("eth_simulateV1", [{
            "blockStateCalls": [{"stateOverrides": {wallet: {"code": artifact.deployed_bytecode}},
                                 "calls": [call]}],
            "validation": False,
        }, hex(block_number)]))
    answers = client.batch(batch)
    return [_report(request, answer, wallet, block_number)
            for request, answer in zip(requests, answers, strict=True)]


def _report(request: ProbeRequest, answer: Any, wallet: str,
            block_number: int) -> ProbeReport | ProbeFailure:
    try:
        result = answer[0]["calls"][0]
        status = int(result["status"], 16)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise ApiError(f"eth_simulateV1 answered the token probe in an unknown shape: "
                       f"{str(answer)[:200]}") from exc
    if status != 1:
        return ProbeFailure(request, revert_text(result.get("returnData")))
    _, output_type = _probe()
    try:
        (fields,) = decode([output_type], bytes.fromhex(result["returnData"][2:]))
    except Exception as exc:
        raise ApiError("the token probe's answer could not be decoded") from exc
    (quoted, buy_ok, buy_error, received, pool_sent, control_ok, control_error, transfer_ok,
     transfer_false, transfer_error, transfer_sent, transfer_arrived, transfer_debited,
     sell_ok, sell_error, sell_sent, sell_arrived, sell_out, big_buy_ok, big_buy_error,
     big_received, big_sell_ok, big_sell_error, start_self, end_self, start_other,
     end_other, zero_transfer_error, input_blocked, input_transfer_error) = fields
    token = request.route.token.address.lower()
    by_events = _net_transfers(result.get("logs") or [], token, (wallet, OTHER_ADDRESS))

    def err(ok: bool, data: bytes) -> str | None:
        return None if ok else revert_text(data)

    return ProbeReport(
        request=request, block_number=block_number, quoted=quoted, buy_ok=buy_ok,
        buy_error=err(buy_ok, buy_error), received=received, pool_sent=pool_sent,
        control_ok=control_ok, control_error=err(control_ok, control_error),
        transfer_ok=transfer_ok, transfer_returned_false=transfer_false,
        transfer_error=err(transfer_ok or transfer_false or not transfer_sent, transfer_error),
        transfer_sent=transfer_sent, transfer_arrived=transfer_arrived,
        transfer_debited=transfer_debited, sell_ok=sell_ok,
        sell_error=err(sell_ok or not sell_sent, sell_error), sell_sent=sell_sent,
        sell_arrived=sell_arrived, sell_out=sell_out, big_buy_ok=big_buy_ok,
        big_buy_error=err(big_buy_ok, big_buy_error), big_received=big_received,
        big_sell_ok=big_sell_ok, big_sell_error=err(big_sell_ok, big_sell_error),
        wallet_delta=end_self - start_self, other_delta=end_other - start_other,
        wallet_delta_by_events=by_events[wallet.lower()],
        other_delta_by_events=by_events[OTHER_ADDRESS.lower()],
        zero_transfer_error=revert_text(zero_transfer_error) if zero_transfer_error else None,
        input_transfer_error=revert_text(input_transfer_error) if input_blocked else None,
    )


def _net_transfers(logs: Sequence[dict[str, Any]], token: str,
                   holders: Sequence[str]) -> dict[str, int]:
    """Net amount of ``token`` each holder gained by the ``Transfer`` events in ``logs``."""
    net = {h.lower(): 0 for h in holders}
    for entry in logs:
        topics = entry.get("topics") or []
        if (str(entry.get("address", "")).lower() != token or len(topics) != 3
                or str(topics[0]).lower() != TRANSFER_TOPIC):
            continue
        sender = "0x" + str(topics[1])[-40:].lower()
        recipient = "0x" + str(topics[2])[-40:].lower()
        amount = int(entry.get("data") or "0x0", 16)
        if sender in net:
            net[sender] -= amount
        if recipient in net:
            net[recipient] += amount
    return net
